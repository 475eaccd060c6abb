package kindcluster

import (
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// Values are the candidate proxy's pod settings, in the shape of the
// zero-to-jupyterhub chart's values (proxy.chp.*), so that an operator's
// own values file can be given as it is.
type Values struct {
	Proxy struct {
		CHP CHPValues `json:"chp"`
	} `json:"proxy"`
}

// CHPValues are z2jh's proxy.chp values that shape the pod.
type CHPValues struct {
	Resources             corev1.ResourceRequirements `json:"resources"`
	LivenessProbe         ProbeValues                 `json:"livenessProbe"`
	ReadinessProbe        ProbeValues                 `json:"readinessProbe"`
	ExtraCommandLineFlags []string                    `json:"extraCommandLineFlags"`
	ExtraEnv              map[string]string           `json:"extraEnv"`
}

// ProbeValues are z2jh's probe settings.
type ProbeValues struct {
	Enabled             *bool `json:"enabled"`
	InitialDelaySeconds int32 `json:"initialDelaySeconds"`
	PeriodSeconds       int32 `json:"periodSeconds"`
	TimeoutSeconds      int32 `json:"timeoutSeconds"`
	FailureThreshold    int32 `json:"failureThreshold"`
}

// DefaultValues are z2jh's defaults for the proxy's probes, with the
// resources a z2jh deployment for a few hundred users typically sets (the
// chart leaves them empty): the memory limit is what makes a leaking proxy
// end as an OOM kill.
func DefaultValues() Values {
	var v Values
	c := &v.Proxy.CHP
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	yes := true
	c.LivenessProbe = ProbeValues{Enabled: &yes, InitialDelaySeconds: 60, PeriodSeconds: 10, TimeoutSeconds: 3, FailureThreshold: 30}
	c.ReadinessProbe = ProbeValues{Enabled: &yes, InitialDelaySeconds: 0, PeriodSeconds: 2, TimeoutSeconds: 1, FailureThreshold: 1000}
	return v
}

// LoadValues reads a z2jh values file over the defaults: what it sets
// replaces the default, what it leaves out stays.
func LoadValues(path string) (Values, error) {
	v := DefaultValues()
	if path == "" {
		return v, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return v, fmt.Errorf("values: %w", err)
	}
	var over Values
	if err := yaml.UnmarshalStrict(b, &over, yaml.DisallowUnknownFields); err != nil {
		// A z2jh values file holds much else; only proxy.chp matters here.
		if err := yaml.Unmarshal(b, &over); err != nil {
			return v, fmt.Errorf("values %s: %w", path, err)
		}
	}
	o, c := over.Proxy.CHP, &v.Proxy.CHP
	if o.Resources.Requests != nil || o.Resources.Limits != nil {
		c.Resources = o.Resources
	}
	mergeProbe(&c.LivenessProbe, o.LivenessProbe)
	mergeProbe(&c.ReadinessProbe, o.ReadinessProbe)
	c.ExtraCommandLineFlags = append(c.ExtraCommandLineFlags, o.ExtraCommandLineFlags...)
	if len(o.ExtraEnv) > 0 {
		c.ExtraEnv = o.ExtraEnv
	}
	return v, nil
}

func mergeProbe(dst *ProbeValues, o ProbeValues) {
	if o.Enabled != nil {
		dst.Enabled = o.Enabled
	}
	for _, f := range []struct{ dst, src *int32 }{
		{&dst.InitialDelaySeconds, &o.InitialDelaySeconds}, {&dst.PeriodSeconds, &o.PeriodSeconds},
		{&dst.TimeoutSeconds, &o.TimeoutSeconds}, {&dst.FailureThreshold, &o.FailureThreshold},
	} {
		if *f.src != 0 {
			*f.dst = *f.src
		}
	}
}

// WithMemoryLimit sets the proxy container's memory limit (and lowers the
// request to it if the request was higher), as compare's --memory-limit
// does for a local candidate.
func (v Values) WithMemoryLimit(bytes int64) Values {
	if bytes <= 0 {
		return v
	}
	r := &v.Proxy.CHP.Resources
	limits := corev1.ResourceList{}
	for k, q := range r.Limits {
		limits[k] = q
	}
	q := *resource.NewQuantity(bytes, resource.BinarySI)
	limits[corev1.ResourceMemory] = q
	r.Limits = limits
	if req, ok := r.Requests[corev1.ResourceMemory]; ok && req.Cmp(q) > 0 {
		requests := corev1.ResourceList{}
		for k, x := range r.Requests {
			requests[k] = x
		}
		requests[corev1.ResourceMemory] = q
		r.Requests = requests
	}
	return v
}
