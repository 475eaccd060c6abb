// Package kindcluster runs a comparison's staging in Kubernetes, as
// production runs the proxy: a kind cluster (created, reused or torn
// down through kind's library), the candidate as a Deployment with z2jh's
// probes and resources, the fixtures as a Deployment, and the replay as an
// Indexed Job of N shards; their results files land in a directory the
// host shares with the nodes, to be merged.
package kindcluster

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names and ports of what is deployed. The proxy's names are z2jh's, so
// that a values file and an operator's habits carry over.
const (
	ProxyName    = "proxy"
	PublicName   = "proxy-public"
	APIName      = "proxy-api"
	HubName      = "hub"
	FixturesName = "fixtures"
	ReplayName   = "replay"
	TokenSecret  = "hubreplay-proxy-token"
	TokenKey     = "auth_token"

	ProxyPort = 8000
	APIPort   = 8001
	HubPort   = 8081
	// NodePort is where the proxy's public port is reached on the nodes;
	// the kind config maps it to the host, so that measurements do not go
	// through an API-server port-forward.
	NodePort = 30080
	// MountPath is where every node and pod sees the work directory the
	// host shares with the cluster (kind's extraMounts): traces in,
	// results out.
	MountPath = "/hubreplay"
)

// Staging says what to deploy for one run of a comparison.
type Staging struct {
	Namespace string
	// Image is hubreplay's own image (fixtures and replay run it).
	Image string
	// Candidate is the proxy's image; Command its command before
	// JupyterHub's flags (default: configurable-http-proxy, as in the
	// official image).
	Candidate string
	Command   []string
	Token     string
	Values    Values
	// Trace is the trace's path under MountPath; Results the directory
	// under MountPath the shards write into.
	Trace, Results string
	// Shards is how many replay pods share the trace.
	Shards int
	// Play are the flags that decide what is played (--speed, --users,
	// --seed, --from, --to …), the same for the fixtures and every shard.
	Play []string
	// StartAt is the moment every shard and the fixtures start at.
	StartAt       time.Time
	CheckInterval time.Duration
	// Work is the volume the fixtures and shards mount at MountPath
	// (default: the kind nodes' host directory).
	Work corev1.VolumeSource
	// NoNodePort keeps the proxy's public Service inside the cluster:
	// NodePort exists for kind, whose host reaches it.
	NoNodePort bool
}

// Objects are what a Staging deploys, in the order they are created.
type Objects struct {
	Namespace *corev1.Namespace
	Secret    *corev1.Secret
	Proxy     *appsv1.Deployment
	Public    *corev1.Service
	API       *corev1.Service
	Hub       *corev1.Service
	Fixtures  *appsv1.Deployment
	Replay    *batchv1.Job
}

// All lists the objects in creation order.
func (o *Objects) All() []runtime.Object {
	return []runtime.Object{o.Namespace, o.Secret, o.Proxy, o.Public, o.API, o.Hub, o.Fixtures, o.Replay}
}

func labels(component string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "hubreplay", "app.kubernetes.io/component": component}
}

func (s *Staging) meta(name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: s.Namespace, Labels: labels(component)}
}

// Build makes the objects.
func (s *Staging) Build() (*Objects, error) {
	if s.Namespace == "" || s.Image == "" || s.Candidate == "" || s.Trace == "" || s.Results == "" || s.Token == "" {
		return nil, fmt.Errorf("staging: namespace, image, candidate, trace, results and token are all needed")
	}
	if s.Shards < 1 {
		return nil, fmt.Errorf("staging: %d shards: give at least 1", s.Shards)
	}
	o := &Objects{
		Namespace: &corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: s.Namespace, Labels: labels("staging")}},
		Secret: &corev1.Secret{TypeMeta: typeMeta("v1", "Secret"), ObjectMeta: s.meta(TokenSecret, ProxyName),
			Type: corev1.SecretTypeOpaque, StringData: map[string]string{TokenKey: s.Token}},
		Proxy:    s.proxy(),
		Public:   s.public(),
		API:      s.service(APIName, ProxyName, corev1.ServiceTypeClusterIP, corev1.ServicePort{Name: "api", Port: APIPort, TargetPort: intstr.FromString("api")}),
		Hub:      s.service(HubName, FixturesName, corev1.ServiceTypeClusterIP, corev1.ServicePort{Name: "hub", Port: HubPort, TargetPort: intstr.FromString("hub")}),
		Fixtures: s.fixtures(),
		Replay:   s.replay(),
	}
	return o, nil
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func (s *Staging) service(name, component string, typ corev1.ServiceType, port corev1.ServicePort) *corev1.Service {
	port.Protocol = corev1.ProtocolTCP
	return &corev1.Service{TypeMeta: typeMeta("v1", "Service"), ObjectMeta: s.meta(name, component),
		Spec: corev1.ServiceSpec{Type: typ, Selector: labels(component), Ports: []corev1.ServicePort{port}}}
}

func tokenEnv() corev1.EnvVar {
	return corev1.EnvVar{Name: "CONFIGPROXY_AUTH_TOKEN", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: TokenSecret}, Key: TokenKey}}}
}

func probe(v ProbeValues) *corev1.Probe {
	if v.Enabled != nil && !*v.Enabled {
		return nil
	}
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/_chp_healthz", Port: intstr.FromString("http")}},
		InitialDelaySeconds: v.InitialDelaySeconds, PeriodSeconds: v.PeriodSeconds, TimeoutSeconds: v.TimeoutSeconds, FailureThreshold: v.FailureThreshold,
	}
}

// proxy is the candidate, started as z2jh starts configurable-http-proxy.
func (s *Staging) proxy() *appsv1.Deployment {
	v := s.Values.Proxy.CHP
	hub := fmt.Sprintf("http://%s:%d", HubName, HubPort)
	cmd := s.Command
	if len(cmd) == 0 {
		cmd = []string{"configurable-http-proxy"}
	}
	args := append([]string{"--ip=", "--api-ip=", "--api-port=" + strconv.Itoa(APIPort),
		"--default-target=" + hub, "--error-target=" + hub + "/hub/error", "--port=" + strconv.Itoa(ProxyPort)}, v.ExtraCommandLineFlags...)
	env := []corev1.EnvVar{tokenEnv()}
	for _, k := range sortedKeys(v.ExtraEnv) {
		env = append(env, corev1.EnvVar{Name: k, Value: v.ExtraEnv[k]})
	}
	c := corev1.Container{
		Name: "chp", Image: s.Candidate, ImagePullPolicy: corev1.PullIfNotPresent,
		Command: append(append([]string{}, cmd...), args...),
		Env:     env,
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: ProxyPort, Protocol: corev1.ProtocolTCP},
			{Name: "api", ContainerPort: APIPort, Protocol: corev1.ProtocolTCP}},
		Resources:      v.Resources,
		LivenessProbe:  probe(v.LivenessProbe),
		ReadinessProbe: probe(v.ReadinessProbe),
	}
	return s.deployment(ProxyName, ProxyName, corev1.PodSpec{Containers: []corev1.Container{c}})
}

func (s *Staging) deployment(name, component string, pod corev1.PodSpec) *appsv1.Deployment {
	one := int32(1)
	return &appsv1.Deployment{TypeMeta: typeMeta("apps/v1", "Deployment"), ObjectMeta: s.meta(name, component),
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			// z2jh's: a restarted proxy is a new pod, never two at once.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: labels(component)},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(component)}, Spec: pod},
		}}
}

func (s *Staging) public() *corev1.Service {
	if s.NoNodePort {
		return s.service(PublicName, ProxyName, corev1.ServiceTypeClusterIP, corev1.ServicePort{Name: "http", Port: ProxyPort, TargetPort: intstr.FromString("http")})
	}
	return s.service(PublicName, ProxyName, corev1.ServiceTypeNodePort, corev1.ServicePort{Name: "http", Port: ProxyPort, TargetPort: intstr.FromString("http"), NodePort: NodePort})
}

func (s *Staging) workVolume() (corev1.Volume, corev1.VolumeMount) {
	src := s.Work
	if src == (corev1.VolumeSource{}) {
		src = HostDir{}.Volume()
	}
	return corev1.Volume{Name: "work", VolumeSource: src}, corev1.VolumeMount{Name: "work", MountPath: MountPath}
}

func (s *Staging) together() []string {
	return append(append([]string{}, s.Play...), "--start-at", s.StartAt.UTC().Format(time.RFC3339Nano))
}

// fixtures runs the hub stub and the user-server emulators; the stub
// drives the candidate's routes API.
func (s *Staging) fixtures() *appsv1.Deployment {
	vol, mount := s.workVolume()
	args := append([]string{"fixtures", "serve", "--trace", path.Join(MountPath, s.Trace),
		"--api", fmt.Sprintf("http://%s:%d", APIName, APIPort),
		"--hub-listen", fmt.Sprintf("0.0.0.0:%d", HubPort), "--user-listen-ip", "0.0.0.0", "--advertise", "$(POD_IP)"}, s.together()...)
	if s.CheckInterval > 0 {
		args = append(args, "--check-routes-interval", s.CheckInterval.String())
	}
	c := corev1.Container{
		Name: FixturesName, Image: s.Image, ImagePullPolicy: corev1.PullIfNotPresent, Args: args,
		Env:          []corev1.EnvVar{tokenEnv(), {Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
		Ports:        []corev1.ContainerPort{{Name: "hub", ContainerPort: HubPort, Protocol: corev1.ProtocolTCP}},
		VolumeMounts: []corev1.VolumeMount{mount},
	}
	return s.deployment(FixturesName, FixturesName, corev1.PodSpec{Containers: []corev1.Container{c}, Volumes: []corev1.Volume{vol}})
}

// replay is an Indexed Job: pod i plays shard i of N and writes its
// results into the shared directory.
func (s *Staging) replay() *batchv1.Job {
	vol, mount := s.workVolume()
	n := int32(s.Shards)
	indexed := batchv1.IndexedCompletion
	noRetry := int32(0)
	shard := fmt.Sprintf("$(JOB_COMPLETION_INDEX)/%d", s.Shards)
	out := path.Join(MountPath, s.Results, "shard-$(JOB_COMPLETION_INDEX).results")
	args := append([]string{"replay", "--trace", path.Join(MountPath, s.Trace),
		"--target", fmt.Sprintf("http://%s:%d", PublicName, ProxyPort), "--fixtures=false",
		"--shard", shard, "-o", out, "--force"}, s.together()...)
	c := corev1.Container{
		Name: ReplayName, Image: s.Image, ImagePullPolicy: corev1.PullIfNotPresent, Args: args,
		// JOB_COMPLETION_INDEX is set by the Job controller; naming it here
		// lets the arguments use it.
		Env: []corev1.EnvVar{{Name: "JOB_COMPLETION_INDEX", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
			FieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}},
		VolumeMounts: []corev1.VolumeMount{mount},
	}
	return &batchv1.Job{TypeMeta: typeMeta("batch/v1", "Job"), ObjectMeta: s.meta(ReplayName, ReplayName),
		Spec: batchv1.JobSpec{
			Completions: &n, Parallelism: &n, CompletionMode: &indexed,
			// A shard that failed is a result to look at, not to play again.
			BackoffLimit: &noRetry,
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(ReplayName)},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{c}, Volumes: []corev1.Volume{vol}}},
		}}
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
