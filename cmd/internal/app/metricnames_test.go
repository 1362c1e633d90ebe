package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"
)

// The Grafana dashboard and the alert rules in deploy/ query kafkaguard's
// metrics by name; a renamed or dropped metric would leave a panel empty and
// an alert silent without any error. Every name they use must be one the
// registry of a built App describes. Describe, unlike a scrape, also lists
// vectors that have no series yet (no rewrite, no local answer so far).

var (
	fqNameRE     = regexp.MustCompile(`fqName: "([^"]+)"`)
	usedMetricRE = regexp.MustCompile(`\bkafkaguard_[a-z0-9_]+`)
)

// describedNames returns the fully qualified names of every metric reg
// describes.
func describedNames(t *testing.T, reg *prometheus.Registry) map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(ch)
		close(ch)
	}()
	names := map[string]bool{}
	for d := range ch {
		m := fqNameRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read a name from %s", d)
		}
		names[m[1]] = true
	}
	return names
}

// deployedMetricNames maps each kafkaguard metric name used by the dashboard's
// queries (panels and variables) and the alert rules' expressions to where it
// is used. Comments in the rule file (which name metrics still to come) are
// not read.
func deployedMetricNames(t *testing.T) map[string]string {
	t.Helper()
	deploy := filepath.Join("..", "..", "..", "deploy")
	used := map[string]string{}

	raw, err := os.ReadFile(filepath.Join(deploy, "grafana", "kafkaguard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("kafkaguard.json: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Panels) > 0 {
			t.Fatalf("panel %q nests panels (a collapsed row): this test reads only top-level panels", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range usedMetricRE.FindAllString(tg.Expr, -1) {
				used[n] = "dashboard panel " + p.Title
			}
		}
	}
	for _, v := range dash.Templating.List {
		for _, n := range usedMetricRE.FindAllString(v.Definition, -1) {
			used[n] = "dashboard variable " + v.Name
		}
	}

	raw, err = os.ReadFile(filepath.Join(deploy, "prometheus", "kafkaguard-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("kafkaguard-rules.yaml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, n := range usedMetricRE.FindAllString(r.Expr, -1) {
				used[n] = "alert " + r.Alert
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("no kafkaguard metric names found in deploy/grafana and deploy/prometheus")
	}
	return used
}

func TestDeployedMetricNamesExist(t *testing.T) {
	cfg := testConfig(t)
	if !cfg.Abuse.Enabled {
		t.Fatal("test config has abuse off: the gate's metrics would be missing")
	}
	a, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	have := describedNames(t, a.reg)
	var missing []string
	for name, where := range deployedMetricNames(t) {
		base := name
		for _, s := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, s); ok && have[b] {
				base = b
			}
		}
		if !have[base] {
			missing = append(missing, name+" (used by "+where+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("not a kafkaguard metric: %s", m)
	}
}

// Grafana keys panels by id (links, editing, a panel's JSON): two panels with
// one id show as one, and panels whose grid boxes overlap are drawn on top of
// each other. Both happened in this dashboard once.
func TestDashboardPanelsDistinct(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "grafana", "kafkaguard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type box struct{ X, Y, W, H int }
	var dash struct {
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			GridPos box    `json:"gridPos"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("kafkaguard.json: %v", err)
	}
	ids := map[int]string{}
	for i, p := range dash.Panels {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		a := p.GridPos
		if a.W <= 0 || a.H <= 0 || a.X < 0 || a.X+a.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, a)
		}
		for _, q := range dash.Panels[:i] {
			b := q.GridPos
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("panels %q %+v and %q %+v overlap", q.Title, b, p.Title, a)
			}
		}
	}
}
