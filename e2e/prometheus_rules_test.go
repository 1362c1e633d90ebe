package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The checks here read deploy/grafana/ and deploy/prometheus/ and need no
// broker, so they run without KG_E2E; the ones that run promtool need
// Debian's prometheus package. prometheus_test.go runs the rules and the
// dashboard's queries in a real Prometheus against a real kafkaguard.

// deployDir is deploy/ in this checkout, found from this file's path so the
// tests work whatever the working directory (TestMain sets repoRoot only
// under KG_E2E).
func deployDir(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller: no file")
	}
	return filepath.Join(filepath.Dir(file), "..", "deploy")
}

// requireTool returns the path of a command-line tool. Outside CI a missing
// tool skips the test with a message saying what to install; under CI=true
// it fails it, so a broken install never passes as a skip.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (CI=true): install %s (apt-get install -y %s)", name, pkg, pkg)
	}
	t.Skipf("%s not found: apt-get install -y %s to run this test", name, pkg)
	return ""
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// loadRules parses deploy/prometheus/kafkaguard-rules.yaml strictly: a key
// the struct does not know is an error, so a typo cannot hide a field.
func loadRules(t *testing.T) ruleFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir(t), "prometheus", "kafkaguard-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("kafkaguard-rules.yaml: %v", err)
	}
	if len(f.Groups) == 0 {
		t.Fatal("kafkaguard-rules.yaml: no groups")
	}
	return f
}

// panelQuery is one query of the dashboard: a panel target or a variable.
type panelQuery struct {
	panel string
	expr  string
}

// dashboardQueries returns every PromQL query in deploy/grafana/kafkaguard.json:
// the targets of every panel (rows' nested panels included) and the
// label_values queries of the template variables.
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir(t), "grafana", "kafkaguard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("kafkaguard.json: %v", err)
	}
	var qs []panelQuery
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("panel %q has a target without expr", p.Title)
				}
				qs = append(qs, panelQuery{p.Title, tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			qs = append(qs, panelQuery{"variable " + v.Name, v.Definition})
		}
	}
	if len(qs) == 0 {
		t.Fatal("kafkaguard.json: no queries")
	}
	return qs
}

// metricNameRE finds kafkaguard metric names in PromQL.
var metricNameRE = regexp.MustCompile(`\bkafkaguard_[a-z0-9_]+`)

// usedMetricNames maps every kafkaguard metric name the dashboard and the
// rules use to one place that uses it.
func usedMetricNames(t *testing.T) map[string]string {
	t.Helper()
	used := map[string]string{}
	for _, q := range dashboardQueries(t) {
		for _, n := range metricNameRE.FindAllString(q.expr, -1) {
			used[n] = "dashboard panel " + q.panel
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			for _, n := range metricNameRE.FindAllString(r.Expr, -1) {
				used[n] = "alert " + r.Alert
			}
		}
	}
	return used
}

// histogramBase strips the suffix Prometheus adds to a histogram's series.
func histogramBase(name string) string {
	for _, s := range []string{"_bucket", "_count", "_sum"} {
		if b, ok := strings.CutSuffix(name, s); ok {
			return b
		}
	}
	return name
}

// The PrometheusRule for the Operator carries exactly the groups of the
// plain rule file: same alerts, expressions, durations, labels and runbooks.
func TestPrometheusRuleMatchesRuleFile(t *testing.T) {
	rules := loadRules(t)
	raw, err := os.ReadFile(filepath.Join(deployDir(t), "prometheus", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Groups []ruleGroup `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &pr); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("prometheusrule.yaml is %s %s, want monitoring.coreos.com/v1 PrometheusRule", pr.APIVersion, pr.Kind)
	}
	if !reflect.DeepEqual(pr.Spec.Groups, rules.Groups) {
		for i := range max(len(pr.Spec.Groups), len(rules.Groups)) {
			if i >= len(pr.Spec.Groups) || i >= len(rules.Groups) {
				t.Errorf("group %d is in only one file", i)
				continue
			}
			a, b := pr.Spec.Groups[i].Rules, rules.Groups[i].Rules
			for j := range max(len(a), len(b)) {
				switch {
				case j >= len(a) || j >= len(b):
					t.Errorf("group %q: rule %d is in only one file", rules.Groups[i].Name, j)
				case !reflect.DeepEqual(a[j], b[j]):
					t.Errorf("group %q: rule %q differs:\nprometheusrule.yaml: %+v\nkafkaguard-rules.yaml: %+v",
						rules.Groups[i].Name, b[j].Alert, a[j], b[j])
				}
			}
		}
		t.Fatal("prometheusrule.yaml's spec.groups differ from kafkaguard-rules.yaml; regenerate it (see its header)")
	}
}

// Every alert carries what an on-call engineer needs: a severity, a
// summary, a description and a runbook.
func TestPrometheusRulesAnnotated(t *testing.T) {
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %q: a rule without alert (recording rules are not expected here)", g.Name)
				continue
			}
			switch r.Labels["severity"] {
			case "warning", "critical":
			default:
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			}
			for _, k := range []string{"summary", "description", "runbook"} {
				if r.Annotations[k] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, k)
				}
			}
		}
	}
}

// promtool accepts the rule file, and its unit tests (each alert firing and
// not firing) pass.
func TestPrometheusRulesPromtool(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	dir := filepath.Join(deployDir(t), "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "kafkaguard-rules.yaml"},
		{"test", "rules", "kafkaguard-rules.test.yaml"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		} else {
			t.Logf("promtool %v:\n%s", args, out)
		}
	}
}

// Every alert in the rule file has a unit test in kafkaguard-rules.test.yaml,
// so promtool's SUCCESS covers them all.
func TestPrometheusRulesAllTested(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deployDir(t), "prometheus", "kafkaguard-rules.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(raw, &tf); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var missing []string
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if !fires[r.Alert] {
				missing = append(missing, r.Alert+" (firing)")
			}
			if !quiet[r.Alert] {
				missing = append(missing, r.Alert+" (not firing)")
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("kafkaguard-rules.test.yaml has no case for: %v", missing)
	}
}
