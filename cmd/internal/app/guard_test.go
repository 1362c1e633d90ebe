package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafkaguard/kafkaguard/config"
)

const testToken = "s3cret-admin-token"

// guardedApp builds an app whose admin.token_file holds testToken and returns its admin handler.
func guardedApp(t *testing.T, protectReads bool) (*App, http.Handler, *lockedBuffer, string) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, testToken+"\n")
	cfg := testConfig(t)
	cfg.Admin.TokenFile, cfg.Admin.ProtectReads = tokenFile, protectReads
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log, err := NewLogger(cfg.Log, logs)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return a, a.adminHandler(), logs, tokenFile
}

func call(h http.Handler, method, path, token, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// With admin.token_file set, what changes state or costs much needs the token; reads need it only with
// protect_reads; the probes never do. A refusal is a 401 that says how to authenticate, is counted, and
// never logs a token.
func TestAdminGuard(t *testing.T) {
	type step struct {
		method, path, token, body string
		want                      int
	}
	open := []step{
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 503}, // its upstream is a closed port: open, and honest
	}
	mutating := []step{
		{"DELETE", "/bans/192.0.2.7", "", "", 401},
		{"DELETE", "/bans/192.0.2.7", "guess-7f3a", "", 401},
		{"DELETE", "/bans/192.0.2.7", testToken, "", 404}, // authorised; no such ban
		{"POST", "/bans", "", `{"source":"192.0.2.7","duration":"10m"}`, 401},
		{"POST", "/lift", "", "source=192.0.2.7", 401},
		{"POST", "/debug/free-os-memory", "", "", 401},
		{"POST", "/debug/free-os-memory", testToken, "", 200},
		{"GET", "/debug/pprof/", "", "", 401},
		{"GET", "/debug/pprof/cmdline", testToken, "", 200},
	}
	reads := func(want int) []step {
		return []step{{"GET", "/", "", "", want}, {"GET", "/bans", "", "", want}, {"GET", "/config", "", "", want},
			{"GET", "/metrics", "", "", want}, {"GET", "/bans", testToken, "", 200}, {"GET", "/config", testToken, "", 200}}
	}
	for _, tc := range []struct {
		name         string
		protectReads bool
		steps        []step
	}{
		{"reads open", false, append(append(open, mutating...), reads(200)...)},
		{"reads protected", true, append(append(open, mutating...), reads(401)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, h, logs, _ := guardedApp(t, tc.protectReads)
			refused := 0
			for _, s := range tc.steps {
				rec := call(h, s.method, s.path, s.token, s.body)
				if rec.Code != s.want {
					t.Errorf("%s %s (token %q) = %d, want %d: %s", s.method, s.path, s.token, rec.Code, s.want, rec.Body)
				}
				if rec.Code == http.StatusUnauthorized {
					refused++
					if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer ") {
						t.Errorf("%s %s: 401 without WWW-Authenticate: Bearer", s.method, s.path)
					}
				}
			}
			var total float64
			for _, ep := range []string{"DELETE /bans/", "POST /bans", "POST /lift", "POST /debug/free-os-memory",
				"GET /debug/pprof/", "GET /", "GET /bans", "GET /config", "GET /metrics"} {
				total += metricValue(a.guard.requests.WithLabelValues(ep, "401"))
			}
			if int(total) != refused {
				t.Errorf("kafkaguard_admin_requests_total{code=401} sums to %v, want %d", total, refused)
			}
			if logs.count(testToken) != 0 || logs.count("guess-7f3a") != 0 {
				t.Errorf("a token reached the log:\n%s", logs.b.String())
			}
			if logs.count("admin request refused") == 0 {
				t.Error("no log line for a refused request")
			}
		})
	}
}

// POST /bans bans a source with a reason that GET /bans then shows; a bad request is a 400 naming the
// problem, and nothing is banned.
func TestAdminAddBan(t *testing.T) {
	a, h, _, _ := guardedApp(t, false)
	for _, tc := range []struct{ name, body, want string }{
		{"not json", `source=1.2.3.4`, "bad request body"},
		{"unknown field", `{"source":"192.0.2.7","duration":"10m","forever":true}`, "unknown field"},
		{"too large", `{"source":"192.0.2.7","duration":"10m","reason":"` + strings.Repeat("x", 5000) + `"}`, "bad request body"},
		{"bad source", `{"source":"192.0.2.300","duration":"10m"}`, "source: bad address"},
		{"wide prefix", `{"source":"192.0.2.0/24","duration":"10m"}`, "wider than"},
		{"no duration", `{"source":"192.0.2.7"}`, "duration"},
		{"too long", `{"source":"192.0.2.7","duration":"9000h"}`, "duration"},
		{"reason on two lines", `{"source":"192.0.2.7","duration":"10m","reason":"a\nb"}`, "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := call(h, "POST", "/bans", testToken, tc.body)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("= %d %q, want 400 containing %q", rec.Code, rec.Body, tc.want)
			}
		})
	}
	if n := a.gate.ActiveBans(); n != 0 {
		t.Fatalf("%d bans after bad requests", n)
	}
	rec := call(h, "POST", "/bans", testToken, `{"source":"2001:db8:1:2::7","duration":"10m","reason":"incident 42: replaying"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST /bans = %d %s", rec.Code, rec.Body)
	}
	rec = call(h, "GET", "/bans", "", "")
	var bans []BanJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &bans); err != nil {
		t.Fatal(err)
	}
	if len(bans) != 1 || bans[0].Addr != "2001:db8:1:2::/64" || bans[0].Reason != "incident 42: replaying" ||
		bans[0].Until.Sub(bans[0].Since).Minutes() != 10 {
		t.Fatalf("GET /bans = %+v, want the /64 for 10m with its reason", bans)
	}
}

// GET /config shows the config in force; the token file is named, its content never appears.
func TestAdminConfig(t *testing.T) {
	_, h, _, tokenFile := guardedApp(t, false)
	rec := call(h, "GET", "/config", "", "")
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `"token_file": "`+tokenFile+`"`) || !strings.Contains(body, `"max_request_bytes": "1MiB"`) {
		t.Fatalf("GET /config = %d\n%s", rec.Code, body)
	}
	if strings.Contains(body, testToken) {
		t.Fatal("GET /config shows the token")
	}
}

// A reload reads the token file again: the old token stops working, the new one works.
func TestAdminTokenReloaded(t *testing.T) {
	a, h, _, tokenFile := guardedApp(t, false)
	writeFile(t, tokenFile, "rotated-token\n")
	cfg := a.config()
	if err := a.Apply(cfg, "test"); err != nil {
		t.Fatal(err)
	}
	if rec := call(h, "POST", "/debug/free-os-memory", testToken, ""); rec.Code != 401 {
		t.Errorf("old token after rotation = %d, want 401", rec.Code)
	}
	if rec := call(h, "POST", "/debug/free-os-memory", "rotated-token", ""); rec.Code != 200 {
		t.Errorf("new token after rotation = %d, want 200", rec.Code)
	}
	// An emptied token file fails the reload and keeps the token in force.
	writeFile(t, tokenFile, "")
	if err := a.Apply(cfg, "test"); err == nil {
		t.Fatal("reload with an empty token file succeeded")
	}
	if rec := call(h, "POST", "/debug/free-os-memory", "rotated-token", ""); rec.Code != 200 {
		t.Errorf("token after a failed reload = %d, want 200 (kept)", rec.Code)
	}
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if _, err := config.ReadToken(tokenFile); err == nil {
		t.Fatal("ReadToken of a removed file succeeded")
	}
}

// The status page offers no lift button while a token is set, and says how to lift instead.
func TestStatusPageLiftNeedsToken(t *testing.T) {
	a, h, _, _ := guardedApp(t, false)
	if _, err := a.gate.AddBan(mustAddr("192.0.2.7"), 600e9, "test"); err != nil {
		t.Fatal(err)
	}
	body := call(h, "GET", "/", "", "").Body.String()
	if strings.Contains(body, `action="/lift"`) || !strings.Contains(body, "kafkaguard bans lift") {
		t.Fatalf("status page with a token: lift form shown or hint missing:\n%s", body)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
