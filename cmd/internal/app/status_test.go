package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/limits"
)

// The history keeps historySamples samples and historySeries named series whatever it is fed, and adds
// without allocating: its memory is the fixed historyBytes.
func TestHistoryBounded(t *testing.T) {
	var h history
	vals := make([]seriesValue, 100)
	for i := range vals {
		vals[i].name = fmt.Sprintf("reason_%02d", i)
	}
	at := time.Unix(1_700_000_000, 0)
	for n := range 1000 {
		for i := range vals {
			vals[i].count = float64(n)
		}
		h.add(at.Add(time.Duration(n)*historyEvery), vals)
	}
	if size := unsafe.Sizeof(h); size > historyBytes+64 {
		t.Errorf("history is %d bytes, README's budget says %d", size, historyBytes)
	}
	if h.n != historySamples || h.nname != historySeries {
		t.Fatalf("held %d samples, %d series; want %d, %d", h.n, h.nname, historySamples, historySeries)
	}
	allocs := testing.AllocsPerRun(100, func() { h.add(at, vals) })
	if allocs != 0 {
		t.Errorf("add allocates %.0f times, want 0", allocs)
	}

	h = history{}
	for n := range 1000 {
		for i := range vals {
			vals[i].count = float64(n)
		}
		h.add(at.Add(time.Duration(n)*historyEvery), vals)
	}
	w := h.window()
	if w.Intervals != historySamples-1 || w.To.Sub(w.From) != 15*time.Minute {
		t.Errorf("window of %d intervals over %v, want %d over 15m", w.Intervals, w.To.Sub(w.From), historySamples-1)
	}
	if len(w.Series) != historySeries+1 {
		t.Fatalf("%d series, want %d and other", len(w.Series), historySeries)
	}
	if w.Series[0].Name != otherSeries || w.Series[0].Total != float64(90*(100-historySeries)) {
		t.Errorf("largest series %s = %v, want other = %d", w.Series[0].Name, w.Series[0].Total, 90*(100-historySeries))
	}
	for _, s := range w.Series[1:] {
		if s.Total != 90 {
			t.Errorf("series %s total %v, want 90 (one a sample)", s.Name, s.Total)
		}
	}
}

// statusApp is an app (not started) with n sources banned, for page tests.
func statusApp(t testing.TB, n int, clientID string) *App {
	cfg := testConfig(t)
	cfg.Abuse.MaxTrackedSources = max(n, 100)
	a, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if _, banned := a.gate.Offence(addr, clientID, "too_large", 1); !banned {
			t.Fatalf("source %d not banned", i)
		}
	}
	return a
}

// statusServer serves a's status page as adminHandler does, with lifting allowed or not.
func statusServer(t testing.TB, a *App, canLift bool) *httptest.Server {
	o := StatusOptions{Gatherer: a.reg, History: &a.hist, Unban: adminHandler(a.srv, a.gate, a.reg), Version: "test",
		Started: time.Now(), LastReload: func() time.Time { return time.Time{} },
		TopBans: a.gate.TopBans, Tracked: a.gate.Tracked, CanLift: func(*http.Request) bool { return canLift }}
	ts := httptest.NewServer(StatusHandler(o))
	t.Cleanup(ts.Close)
	return ts
}

func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// A ban earned by an authenticated connection names its principal on the page, escaped like the client id.
func TestStatusPageNamesThePrincipal(t *testing.T) {
	a := statusApp(t, 0, "")
	addr := netip.MustParseAddr("10.9.9.9")
	if _, banned := a.gate.OffenceBy(addr, limits.Offender{ClientID: "orders", Principal: "<alice>"}, "unauthenticated", 1); !banned {
		t.Fatal("source not banned")
	}
	ts := statusServer(t, a, false)
	_, body := get(t, ts.Client(), ts.URL+"/")
	if !strings.Contains(body, "<th>principal</th>") || !strings.Contains(body, "<td>orders</td><td>&lt;alice&gt;</td>") {
		t.Errorf("the ban's row lacks client id orders and principal <alice> (escaped):\n%s", body)
	}
}

// What a client puts in its client id reaches the page escaped; the page loads nothing from elsewhere.
func TestStatusPageEscapes(t *testing.T) {
	ts := statusServer(t, statusApp(t, 1, `<script>alert("x")</script>`), true)
	code, body := get(t, ts.Client(), ts.URL+"/?lifted=%3Cb%3E")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("client id not escaped:\n%s", body)
	}
	if strings.Contains(body, "Ban lifted") {
		t.Errorf("a lifted= that is no address reached the page")
	}
	for _, bad := range []string{"src=", "<script", "<link", "@import", "url("} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q: it must load nothing", bad)
		}
	}
	for _, want := range []string{"10.0.0.0", "too_large", `action="/lift"`, "never"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// With 50 000 sources banned (abuse.max_tracked_sources' default) the page lists the top
// statusTopBans and says how many more.
func TestStatusPageManyBans(t *testing.T) {
	const n = 50_000
	a := statusApp(t, n, "c")
	active := a.gate.ActiveBans() // a little under n: the sharded table makes room as it fills
	if active < n*9/10 {
		t.Fatalf("%d bans in force, want about %d", active, n)
	}
	ts := statusServer(t, a, false)
	code, body := get(t, ts.Client(), ts.URL+"/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	if rows := strings.Count(body, "<td>too_large</td>"); rows != statusTopBans {
		t.Errorf("%d ban rows, want %d", rows, statusTopBans)
	}
	if want := fmt.Sprintf("and %d more", active-statusTopBans); !strings.Contains(body, want) {
		i := strings.Index(body, "bans-more")
		t.Errorf("page does not say %q: %s", want, body[max(i-20, 0):min(i+200, len(body))])
	}
	if strings.Contains(body, `action="/lift"`) {
		t.Errorf("lift buttons shown to a request that may not lift")
	}
}

// BenchmarkStatusPage50kBans renders the page with 50 000 bans in force.
func BenchmarkStatusPage50kBans(b *testing.B) {
	ts := statusServer(b, statusApp(b, 50_000, "c"), true)
	c := ts.Client()
	b.ReportAllocs()
	for b.Loop() {
		get(b, c, ts.URL+"/")
	}
}

// The lift form lifts a ban through the DELETE /bans handler when the request may lift, from the page's
// own origin only.
func TestStatusLift(t *testing.T) {
	for _, tc := range []struct {
		name     string
		canLift  bool
		site     string // Sec-Fetch-Site
		source   string
		wantCode int
		lifted   bool
	}{
		{"same origin", true, "same-origin", "10.0.0.0", http.StatusSeeOther, true},
		{"no browser headers (curl)", true, "", "10.0.0.0", http.StatusSeeOther, true},
		{"cross site", true, "cross-site", "10.0.0.0", http.StatusForbidden, false},
		{"not allowed", false, "same-origin", "10.0.0.0", http.StatusForbidden, false},
		{"not an address", true, "same-origin", "<b>", http.StatusBadRequest, false},
		{"not banned", true, "same-origin", "192.0.2.1", http.StatusSeeOther, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := statusApp(t, 1, "c")
			g := a.gate
			ts := statusServer(t, a, tc.canLift)
			req, _ := http.NewRequest("POST", ts.URL+"/lift", strings.NewReader(url.Values{"source": {tc.source}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.site != "" {
				req.Header.Set("Sec-Fetch-Site", tc.site)
			}
			c := *ts.Client()
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			c.Timeout = 5 * time.Second
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Errorf("POST /lift = %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if lifted := g.ActiveBans() == 0; lifted != tc.lifted {
				t.Errorf("ban lifted = %v, want %v", lifted, tc.lifted)
			}
			if loc := resp.Header.Get("Location"); tc.wantCode == http.StatusSeeOther &&
				strings.HasPrefix(loc, "/?lifted=") != tc.lifted {
				t.Errorf("redirect to %q", loc)
			}
		})
	}
}

// A sample sums each refusal reason over APIs and names refusals at accept apart.
func TestSampleRefusals(t *testing.T) {
	reg := prometheus.NewRegistry()
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kafkaguard_frames_rejected_total"}, []string{"reason", "api"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kafkaguard_connections_refused_total"}, []string{"reason"})
	reg.MustRegister(rejected, refused)
	var h history
	at := time.Unix(1_700_000_000, 0)
	sampleRefusals(reg, &h, at, nil)
	rejected.WithLabelValues("too_large", "Produce").Add(2)
	rejected.WithLabelValues("too_large", "none").Add(3)
	rejected.WithLabelValues("banned", "none").Add(1)
	refused.WithLabelValues("banned").Add(4)
	sampleRefusals(reg, &h, at.Add(historyEvery), nil)
	got := map[string]float64{}
	for _, s := range h.window().Series {
		got[s.Name] = s.Total
	}
	want := map[string]float64{"too_large": 5, "banned": 1, "accept:banned": 4}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series %v, want %v", got, want)
	}
}

// The admin address serves the status page at / beside the API, which keeps every path it had.
func TestAdminServesStatusPage(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Address = "127.0.0.1:0"
	a := startApp(t, cfg)
	defer a.Stop()
	base := "http://" + a.adLn.Addr().String()
	c := &http.Client{Timeout: 5 * time.Second}
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/", http.StatusOK, "<h1>kafkaguard</h1>"},
		{"/metrics", http.StatusOK, "kafkaguard_pool_bytes_capacity"},
		{"/healthz", http.StatusOK, "ok"},
		{"/bans", http.StatusOK, "[]"},
		{"/readyz", http.StatusServiceUnavailable, "not ready"},
		{"/nothing", http.StatusNotFound, ""},
	} {
		code, body := get(t, c, base+tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %.80q, want %d with %q", tc.path, code, body, tc.code, tc.want)
		}
	}
	// The upstream is a free port: the page says it is down.
	if _, body := get(t, c, base+"/"); !strings.Contains(body, "down</span>") {
		t.Errorf("status page does not show the dead upstream down")
	}
}
