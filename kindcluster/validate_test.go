package kindcluster

import (
	"fmt"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// validate is an offline check of what 'kubectl apply --dry-run=client'
// and the API server's first checks would refuse (kubectl itself cannot:
// even its client dry run asks a server for discovery and the OpenAPI
// schema): each object goes out as YAML and comes back through client-go's
// strict decoder unchanged, and names, labels, ports, environment,
// selectors and volumes are what the API server accepts.
func validate(objs []runtime.Object) []string {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			bad("%T: %v", o, err)
			continue
		}
		back, gvk, err := strict.Decode(b, nil, nil)
		if err != nil {
			bad("%T does not decode strictly: %v", o, err)
			continue
		}
		if !reflect.DeepEqual(normalize(back), normalize(o)) {
			bad("%s does not come back as it went out", gvk.Kind)
		}
	}
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.Namespace:
			name(bad, "namespace", v.Name, validation.IsDNS1123Label)
			labelsOK(bad, v.Name, v.Labels)
		case *corev1.Secret:
			name(bad, "secret", v.Name, validation.IsDNS1123Subdomain)
			for k := range v.StringData {
				for _, e := range validation.IsConfigMapKey(k) {
					bad("secret key %q: %s", k, e)
				}
			}
		case *corev1.Service:
			name(bad, "service", v.Name, validation.IsDNS1035Label)
			labelsOK(bad, v.Name, v.Labels)
			for _, p := range v.Spec.Ports {
				if p.NodePort != 0 && (p.NodePort < 30000 || p.NodePort > 32767) {
					bad("service %s: node port %d outside 30000-32767", v.Name, p.NodePort)
				}
				if p.NodePort != 0 && v.Spec.Type != corev1.ServiceTypeNodePort && v.Spec.Type != corev1.ServiceTypeLoadBalancer {
					bad("service %s: a node port on a %s service", v.Name, v.Spec.Type)
				}
				if !servesPort(objs, v.Spec.Selector, p.TargetPort.String()) {
					bad("service %s: no pod it selects has port %s", v.Name, p.TargetPort.String())
				}
			}
		case *appsv1.Deployment:
			name(bad, "deployment", v.Name, validation.IsDNS1123Subdomain)
			selectorOK(bad, v.Name, v.Spec.Selector.MatchLabels, v.Spec.Template.Labels)
			if p := v.Spec.Template.Spec.RestartPolicy; p != "" && p != corev1.RestartPolicyAlways {
				bad("deployment %s: restart policy %s", v.Name, p)
			}
			podOK(bad, v.Name, v.Spec.Template.Spec)
		case *batchv1.Job:
			name(bad, "job", v.Name, validation.IsDNS1123Subdomain)
			if p := v.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
				bad("job %s: restart policy %q (Never or OnFailure)", v.Name, p)
			}
			if v.Spec.CompletionMode != nil && *v.Spec.CompletionMode == batchv1.IndexedCompletion && v.Spec.Completions == nil {
				bad("job %s: an Indexed job needs completions", v.Name)
			}
			podOK(bad, v.Name, v.Spec.Template.Spec)
		}
	}
	return errs
}

// normalize drops the type meta the decoder fills in.
func normalize(o runtime.Object) runtime.Object {
	c := o.DeepCopyObject()
	c.GetObjectKind().SetGroupVersionKind(c.GetObjectKind().GroupVersionKind())
	return c
}

func name(bad func(string, ...any), what, n string, check func(string) []string) {
	for _, e := range check(n) {
		bad("%s name %q: %s", what, n, e)
	}
}

func labelsOK(bad func(string, ...any), owner string, ls map[string]string) {
	for k, v := range ls {
		for _, e := range validation.IsQualifiedName(k) {
			bad("%s: label key %q: %s", owner, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			bad("%s: label %s value %q: %s", owner, k, v, e)
		}
	}
}

func selectorOK(bad func(string, ...any), owner string, sel, tmpl map[string]string) {
	labelsOK(bad, owner, tmpl)
	if len(sel) == 0 || !klabels.SelectorFromSet(sel).Matches(klabels.Set(tmpl)) {
		bad("%s: selector %v does not match its pods' labels %v", owner, sel, tmpl)
	}
}

func podOK(bad func(string, ...any), owner string, pod corev1.PodSpec) {
	vols := map[string]bool{}
	for _, v := range pod.Volumes {
		vols[v.Name] = true
		if v.HostPath != nil && !path.IsAbs(v.HostPath.Path) {
			bad("%s: hostPath %q is not absolute", owner, v.HostPath.Path)
		}
	}
	if len(pod.Containers) == 0 {
		bad("%s: no containers", owner)
	}
	for _, c := range pod.Containers {
		name(bad, owner+" container", c.Name, validation.IsDNS1123Label)
		if c.Image == "" {
			bad("%s/%s: no image", owner, c.Name)
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				bad("%s/%s: port name %q: %s", owner, c.Name, p.Name, e)
			}
			ports[p.Name] = true
		}
		env := map[string]bool{}
		for _, e := range c.Env {
			for _, m := range validation.IsEnvVarName(e.Name) {
				bad("%s/%s: env %q: %s", owner, c.Name, e.Name, m)
			}
			if (e.Value != "") == (e.ValueFrom != nil) && e.Value != "" {
				bad("%s/%s: env %s has both a value and a source", owner, c.Name, e.Name)
			}
			env[e.Name] = true
		}
		// $(VAR) in arguments expands only for variables the container has.
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			for _, ref := range varRefs(a) {
				if !env[ref] {
					bad("%s/%s: argument %q names $(%s), which the container's env lacks", owner, c.Name, a, ref)
				}
			}
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.String() != "" && !ports[p.HTTPGet.Port.String()] {
				bad("%s/%s: probe on port %s, which the container does not name", owner, c.Name, p.HTTPGet.Port.String())
			}
		}
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				bad("%s/%s: mounts volume %q, which the pod lacks", owner, c.Name, m.Name)
			}
		}
	}
}

func varRefs(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			return out
		}
		j := strings.Index(s[i:], ")")
		if j < 0 {
			return out
		}
		out = append(out, s[i+2:i+j])
		s = s[i+j:]
	}
}

func servesPort(objs []runtime.Object, sel map[string]string, port string) bool {
	for _, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok || !klabels.SelectorFromSet(sel).Matches(klabels.Set(d.Spec.Template.Labels)) {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
					return true
				}
			}
		}
	}
	return false
}

func TestManifestsValidateOffline(t *testing.T) {
	objs, err := staging(t).Build()
	require.NoError(t, err)
	assert.Empty(t, validate(objs.All()))

	// The check can fail: each of these breaks a rule the API server has.
	breaks := map[string]func(o *Objects){
		"selector":   func(o *Objects) { o.Proxy.Spec.Selector.MatchLabels = map[string]string{"app": "other"} },
		"node port":  func(o *Objects) { o.Public.Spec.Ports[0].NodePort = 8000 },
		"probe port": func(o *Objects) { o.Proxy.Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Port.StrVal = "web" },
		"var ref":    func(o *Objects) { o.Replay.Spec.Template.Spec.Containers[0].Env = nil },
		"name":       func(o *Objects) { o.Hub.Name = "Hub_Stub" },
		"restart":    func(o *Objects) { o.Replay.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways },
		"target":     func(o *Objects) { o.API.Spec.Ports[0].TargetPort.StrVal = "admin" },
	}
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	_, _, err = strict.Decode([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: proxy}\nspec: {replicaz: 1}\n"), nil, nil)
	assert.Error(t, err, "the strict decoder refuses a field Kubernetes does not have")
	for what, brk := range breaks {
		objs, err := staging(t).Build()
		require.NoError(t, err)
		brk(objs)
		assert.NotEmpty(t, validate(objs.All()), "a broken %s is caught", what)
	}
}
