module github.com/hubreplay/hubreplay

go 1.26

require (
	github.com/klauspost/compress v1.20.4
	pgregory.net/rapid v1.3.0
)
