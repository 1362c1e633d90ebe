package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// A config file that cannot be read or parsed is one problem, reported once:
// validating the empty config left behind would only add noise. A value that
// does not decode is reported once too, by Load, not again by Validate.
func TestValidateBadFilesPrintEachProblemOnce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := "listeners:\n  - {address: 127.0.0.1:9092, upstream: 127.0.0.1:19092}\n"
	tests := []struct {
		name     string
		path     string
		problems int
		want     string // in the output
	}{
		{"yaml syntax error", write("syntax.yaml", "listeners:\n  - {address: 127.0.0.1:9092\n"), 1, "parse config"},
		{"directory", dir, 1, "is a directory"},
		{"missing file", filepath.Join(dir, "absent.yaml"), 1, "no such file"},
		{"bad CIDR", write("cidr.yaml", valid+"abuse: {allow: [10.0.0.0/33]}\n"), 1, "abuse.allow[0]"},
		{"bad CIDR and a bad value", write("two.yaml", valid+"abuse: {allow: [not-an-ip], ban_min: -1s}\n"), 2, "abuse.ban_min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run([]string{"validate", "--config", tt.path}, io.Discard, io.Discard)
			var ec *exitCode
			if !errors.As(err, &ec) || ec.code != 2 {
				t.Fatalf("validate = %v, want exit code 2", err)
			}
			if got := countProblems(err.Error()); got != tt.problems {
				t.Errorf("%d problems printed, want %d:\n%v", got, tt.problems, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("output does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

// countProblems counts the problems in validate's message: a one-line
// message is one problem; otherwise a heading is followed by one indented
// line per problem.
func countProblems(msg string) int {
	lines := strings.Split(strings.TrimRight(msg, "\n"), "\n")
	if len(lines) == 1 {
		return 1
	}
	return len(lines) - 1
}

// shippedConfigs returns the example configs the project ships, by name: deploy/kafkaguard.yaml and the
// kafkaguard.yaml of every ConfigMap in the Kubernetes example.
func shippedConfigs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{"deploy/kafkaguard.yaml": "../../deploy/kafkaguard.yaml"}
	for i, doc := range kubeDocs(t) {
		if doc.Kind != "ConfigMap" {
			continue
		}
		path := filepath.Join(t.TempDir(), "sidecar.yaml")
		if err := os.WriteFile(path, []byte(withSecretFiles(t, doc.Data["kafkaguard.yaml"])), 0o600); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("kubernetes document %d (ConfigMap %s)", i, doc.Metadata.Name)] = path
	}
	return out
}

// kubeTLSDir is where the Kubernetes example mounts the Secret kafkaguard-tls.
const kubeTLSDir = "/etc/kafkaguard/tls/"

// withSecretFiles points a Kubernetes example config's certificate paths at
// test certificates written as the Secret's files (tls.crt, tls.key, ca.crt),
// so validate reads real files as it would in the pod.
func withSecretFiles(t *testing.T, cfg string) string {
	t.Helper()
	if !strings.Contains(cfg, kubeTLSDir) {
		return cfg
	}
	dir := t.TempDir()
	certs := tlstest.New(t)
	certs.Server.WriteFiles(t, dir, "tls")
	tlstest.WriteFile(t, filepath.Join(dir, "ca.crt"), certs.CA.CertPEM)
	return strings.ReplaceAll(cfg, kubeTLSDir, dir+"/")
}

// kubeDoc is the part of a Kubernetes object the tests read.
type kubeDoc struct {
	Kind     string                `yaml:"kind"`
	Metadata struct{ Name string } `yaml:"metadata"`
	Data     map[string]string     `yaml:"data"`
	Spec     yaml.Node             `yaml:"spec"`
}

func kubeDocs(t *testing.T) []kubeDoc {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/kubernetes/kafka-with-kafkaguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var docs []kubeDoc
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var d kubeDoc
		if err := dec.Decode(&d); err == io.EOF {
			return docs
		} else if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
}

// Every shipped config is one an operator could run as it is: the abuse gate on, the admin server (which
// lifts bans without authentication) on loopback, and no allow list beyond loopback, which would exempt
// every client in it from bans, caps and rates.
func TestShippedConfigsProtect(t *testing.T) {
	for name, path := range shippedConfigs(t) {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			if !cfg.Abuse.Enabled {
				t.Error("abuse.enabled is false")
			}
			if a := cfg.Admin.Address; a != "" {
				host, _, err := net.SplitHostPort(a)
				ip, perr := netip.ParseAddr(host)
				if err != nil || perr != nil || !ip.IsLoopback() {
					t.Errorf("admin.address %s is not a loopback address: anyone who reaches it can DELETE /bans", a)
				}
			}
			for _, p := range cfg.Abuse.Allow {
				loopback := p.Addr().IsLoopback() && (p.Bits() == 128 || p.Addr().Is4() && p.Bits() >= 8)
				if !loopback {
					t.Errorf("abuse.allow holds %s: only loopback may be exempt in an example", p)
				}
			}
		})
	}
}

// The Kubernetes example's kafkaguard container runs as the image's nonroot user with the container
// settings of the restricted Pod Security profile (the kafka container keeps its image's), and reads its TLS private key from files no other user may read: the projected
// volume's mode (Kubernetes defaults to 0644) gives nothing to others, and the pod's fsGroup is the
// container's group, so the group bits are what let kafkaguard read them.
func TestKubernetesExampleKeepsTheKeyPrivate(t *testing.T) {
	type securityContext struct {
		RunAsNonRoot             bool   `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		RunAsGroup               *int64 `yaml:"runAsGroup"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	}
	var spec struct {
		Template struct {
			Spec struct {
				SecurityContext struct {
					FSGroup *int64 `yaml:"fsGroup"`
				} `yaml:"securityContext"`
				Containers []struct {
					Name            string          `yaml:"name"`
					SecurityContext securityContext `yaml:"securityContext"`
					VolumeMounts    []struct {
						Name string `yaml:"name"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name      string `yaml:"name"`
					Projected *struct {
						DefaultMode *int64 `yaml:"defaultMode"`
						Sources     []struct {
							Secret *struct {
								Items []struct {
									Key  string `yaml:"key"`
									Mode *int64 `yaml:"mode"`
								} `yaml:"items"`
							} `yaml:"secret"`
						} `yaml:"sources"`
					} `yaml:"projected"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	}
	found := false
	for _, d := range kubeDocs(t) {
		if d.Kind != "StatefulSet" {
			continue
		}
		if err := d.Spec.Decode(&spec); err != nil {
			t.Fatal(err)
		}
		found = true
	}
	if !found {
		t.Fatal("no StatefulSet in the manifest")
	}
	pod := spec.Template.Spec
	var sc securityContext
	var mounts []string
	for _, c := range pod.Containers {
		if c.Name == "kafkaguard" {
			sc = c.SecurityContext
			for _, m := range c.VolumeMounts {
				mounts = append(mounts, m.Name)
			}
		}
	}
	if !sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsGroup == nil ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("kafkaguard's securityContext %+v: want runAsNonRoot, a runAsUser and runAsGroup, no privilege escalation, every capability dropped, the RuntimeDefault seccomp profile", sc)
	}
	if g := pod.SecurityContext.FSGroup; g == nil || sc.RunAsGroup == nil || *g != *sc.RunAsGroup {
		t.Errorf("pod fsGroup %v, container runAsGroup %v: want the same group, so mode 0440 files are kafkaguard's to read", g, sc.RunAsGroup)
	}
	keys := 0
	for _, v := range pod.Volumes {
		if v.Projected == nil || !slices.Contains(mounts, v.Name) {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret == nil {
				continue
			}
			for _, it := range src.Secret.Items {
				mode := v.Projected.DefaultMode
				if it.Mode != nil {
					mode = it.Mode
				}
				if mode == nil || *mode&0o007 != 0 {
					t.Errorf("secret key %s in volume %s has mode %v (Kubernetes' default is 0644): others can read it", it.Key, v.Name, mode)
				}
				keys++
			}
		}
	}
	if keys == 0 {
		t.Error("kafkaguard mounts no Secret: the example's TLS key is not where the test looks")
	}
}

// The Kubernetes example lets Prometheus and the kubelet reach the read-only endpoints on
// admin.metrics_address, and a NetworkPolicy keeps clients off the broker's own listeners, which would
// bypass kafkaguard.
func TestKubernetesExampleWiring(t *testing.T) {
	var cfgPath string
	for name, path := range shippedConfigs(t) {
		if strings.HasPrefix(name, "kubernetes") {
			cfgPath = path
		}
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(cfg.Admin.MetricsAddress)
	if err != nil {
		t.Fatalf("admin.metrics_address %q: %v", cfg.Admin.MetricsAddress, err)
	}
	raw, err := os.ReadFile("../../deploy/kubernetes/kafka-with-kafkaguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for _, want := range []string{
		`prometheus.io/port: "` + port + `"`,
		"httpGet: {path: /readyz, port: " + port + "}",
		"httpGet: {path: /healthz, port: " + port + "}",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the manifest lacks %q (admin.metrics_address is %s)", want, cfg.Admin.MetricsAddress)
		}
	}
	policies := 0
	for _, d := range kubeDocs(t) {
		if d.Kind == "NetworkPolicy" {
			policies++
		}
	}
	if policies == 0 {
		t.Error("no NetworkPolicy: any pod can reach the broker's replication listener and bypass kafkaguard")
	}
}
