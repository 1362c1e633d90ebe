package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kafkaguard/kafkaguard/cmd/internal/app"
	"github.com/kafkaguard/kafkaguard/config"
)

const bansUsage = `usage:
  kafkaguard bans list [flags]                                   the bans in force
  kafkaguard bans add SOURCE --for 10m [--reason TEXT] [flags]    ban an address or prefix now
  kafkaguard bans lift SOURCE [flags]                            lift the ban of an address or prefix
flags:
  --admin URL        the admin address (default: admin.address of --config, else 127.0.0.1:9644)
  --token-file FILE  the admin token (default: admin.token_file of --config)
  --config FILE      read the two defaults above from kafkaguard's config
`

// defaultAdmin is admin.address's default, where the CLI looks without --admin or --config.
const defaultAdmin = "127.0.0.1:9644"

// adminTimeout bounds each call to the admin API.
const adminTimeout = 10 * time.Second

// bansCmd wraps GET /bans, POST /bans and DELETE /bans/ for people at a shell.
func bansCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, bansUsage)
		return &exitCode{2, errors.New("bans: list, add or lift?")}
	}
	sub := args[0]
	fs := flag.NewFlagSet("bans "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, bansUsage) }
	admin := fs.String("admin", "", "admin address")
	tokenFile := fs.String("token-file", "", "file holding the admin token")
	cfgPath := fs.String("config", "", "kafkaguard's config file")
	dur := fs.Duration("for", 0, "ban length (add)")
	reason := fs.String("reason", "", "why (add)")
	// Flags may come before or after the source.
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return &exitCode{2, err}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	c, err := newAdminClient(*admin, *tokenFile, *cfgPath)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		if len(pos) != 0 {
			return &exitCode{2, fmt.Errorf("bans list: unexpected arguments %q", pos)}
		}
		return c.list(stdout)
	case "add":
		if len(pos) != 1 || *dur == 0 {
			return &exitCode{2, errors.New("bans add: want SOURCE and --for DURATION, e.g. bans add 192.0.2.7 --for 10m --reason 'incident 42'")}
		}
		return c.add(stdout, pos[0], *dur, *reason)
	case "lift":
		if len(pos) != 1 {
			return &exitCode{2, errors.New("bans lift: want SOURCE, an address (192.0.2.7) or a prefix (2001:db8::/64)")}
		}
		return c.lift(stdout, pos[0])
	default:
		fmt.Fprint(stderr, bansUsage)
		return &exitCode{2, fmt.Errorf("bans: unknown command %q", sub)}
	}
}

// adminClient calls one kafkaguard's admin API.
type adminClient struct {
	base  string // http://host:port
	token string
	http  *http.Client
}

func newAdminClient(admin, tokenFile, cfgPath string) (*adminClient, error) {
	if cfgPath != "" {
		cfg, err := config.Load(cfgPath, nil)
		if err != nil {
			return nil, &exitCode{2, fmt.Errorf("read %s: %w", cfgPath, err)}
		}
		if admin == "" {
			admin = cfg.Admin.Address
		}
		if tokenFile == "" {
			tokenFile = cfg.Admin.TokenFile
		}
	}
	if admin == "" {
		admin = defaultAdmin
	}
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	u, err := url.Parse(admin)
	if err != nil || u.Host == "" {
		return nil, &exitCode{2, fmt.Errorf("--admin %q: want host:port or http://host:port", admin)}
	}
	c := &adminClient{base: strings.TrimSuffix(u.String(), "/"), http: &http.Client{Timeout: adminTimeout}}
	if tokenFile != "" {
		if c.token, err = config.ReadToken(tokenFile); err != nil {
			return nil, &exitCode{2, fmt.Errorf("--token-file: %w", err)}
		}
	}
	return c, nil
}

func (c *adminClient) list(w io.Writer) error {
	body, err := c.do(http.MethodGet, "/bans", nil, http.StatusOK)
	if err != nil {
		return err
	}
	var bans []app.BanJSON
	if err := json.Unmarshal(body, &bans); err != nil {
		return fmt.Errorf("GET /bans: unexpected answer: %w", err)
	}
	if len(bans) == 0 {
		fmt.Fprintln(w, "no bans in force")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tREASON\tCLIENT ID\tBAN #\tENDS IN")
	now := time.Now()
	for _, b := range bans {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\n", b.Addr, b.Reason, b.ClientID, b.Count, b.Until.Sub(now).Round(time.Second))
	}
	return tw.Flush()
}

func (c *adminClient) add(w io.Writer, source string, d time.Duration, reason string) error {
	req, _ := json.Marshal(map[string]string{"source": source, "duration": d.String(), "reason": reason})
	body, err := c.do(http.MethodPost, "/bans", req, http.StatusCreated)
	if err != nil {
		return err
	}
	var b app.BanJSON
	if err := json.Unmarshal(body, &b); err != nil {
		return fmt.Errorf("POST /bans: unexpected answer: %w", err)
	}
	fmt.Fprintf(w, "banned %s until %s (%s)\n", b.Addr, b.Until.Format(time.RFC3339), b.Reason)
	return nil
}

func (c *adminClient) lift(w io.Writer, source string) error {
	body, err := c.do(http.MethodDelete, "/bans/"+source, nil, http.StatusOK)
	if err != nil {
		return err
	}
	fmt.Fprint(w, string(body))
	return nil
}

// maxAnswer bounds what the CLI reads of an answer: GET /bans of a full table is a few MB.
const maxAnswer = 64 << 20

// do calls the admin API and turns each way it can fail into a sentence saying what to do.
func (c *adminClient) do(method, path string, body []byte, want int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("cannot reach the admin API at %s: connection refused; is kafkaguard running there (admin.address, or kubectl port-forward)? Pass --admin", c.base)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("the admin API at %s did not answer within %v", c.base, adminTimeout)
		}
		return nil, fmt.Errorf("call the admin API: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	msg := strings.TrimSpace(string(answer))
	switch {
	case resp.StatusCode == want:
		return answer, nil
	case resp.StatusCode == http.StatusUnauthorized && c.token == "":
		return nil, fmt.Errorf("%s %s: 401: kafkaguard has admin.token_file set; pass --token-file FILE (or --config with admin.token_file)", method, path)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%s %s: 401: the token was refused; is --token-file the file kafkaguard reads (admin.token_file)?", method, path)
	case resp.StatusCode == http.StatusBadRequest:
		return nil, fmt.Errorf("%s %s: 400: %s", method, path, msg)
	default:
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
}
