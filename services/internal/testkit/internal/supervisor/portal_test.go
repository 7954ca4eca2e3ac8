package supervisor

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPortalOnlyInTheDevStack(t *testing.T) {
	t.Parallel()
	root := RepoRoot()
	private, err := PrivateConfig(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	detachedPrivate := private // as TestDetachedComponentLeftAloneThenRestartedOnChange runs one
	detachedPrivate.Detached = true
	without := DevConfig(root)
	without.Without = []string{"portal"}
	tests := []struct {
		name       string
		cfg        Config
		wantPortal bool
	}{
		{name: "dev stack", cfg: DevConfig(root), wantPortal: true},
		{name: "dev stack without portal", cfg: without},
		{name: "private stack", cfg: private},
		{name: "detached, no portal port", cfg: detachedPrivate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := New(tt.cfg).Portal != nil; got != tt.wantPortal {
				t.Errorf("New(%s).Portal != nil = %v, want %v", tt.name, got, tt.wantPortal)
			}
		})
	}
	if p := DevPorts().Portal; p != 8080 {
		t.Errorf("DevPorts().Portal = %d, want 8080", p)
	}
	if private.Ports.Portal != 0 || private.PortalURL() != "" {
		t.Errorf("RandomPorts().Portal = %d, PortalURL() = %q; want 0, \"\"", private.Ports.Portal, private.PortalURL())
	}
}

// TestPortalCommandLine checks that the portal's flags come from the stack's own ports.
func TestPortalCommandLine(t *testing.T) {
	t.Parallel()
	root := RepoRoot()
	s := New(DevConfig(root))
	want := []string{"-addr", "127.0.0.1:8080", "-dir", filepath.Join(root, "web", "portal", "dist"),
		"-issuer", "http://127.0.0.1:8400", "-client-id", "portal-web", "-redirect-uri", PortalRedirectURI,
		"-service", "messaging=https://127.0.0.1:8441,attachment=https://127.0.0.1:8442,notification=https://127.0.0.1:8443,audit=https://127.0.0.1:8444",
		"-mailpit", "http://127.0.0.1:8025"}
	if got := s.Portal.proc.args; !slices.Equal(got, want) {
		t.Errorf("portal args = %q, want %q", got, want)
	}
	if s.Portal.Addr() != "127.0.0.1:8080" {
		t.Errorf("portal Addr() = %q, want 127.0.0.1:8080", s.Portal.Addr())
	}
}

func TestServiceEnvAllowsThePortalOrigin(t *testing.T) {
	t.Parallel()
	root := RepoRoot()
	private, err := PrivateConfig(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "dev stack", cfg: DevConfig(root), want: "http://localhost:5173,http://127.0.0.1:5173,http://127.0.0.1:8080"},
		{name: "private stack", cfg: private, want: "http://localhost:5173,http://127.0.0.1:5173"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, svc := range Services {
				env := New(tt.cfg).ServiceEnv(svc)
				if i := slices.Index(env, "SECUREMSG_HTTP_ALLOWED_ORIGINS="+tt.want); i < 0 {
					t.Errorf("ServiceEnv(%s) has no SECUREMSG_HTTP_ALLOWED_ORIGINS=%s: %q", svc, tt.want, env)
				}
			}
		})
	}
}

// testEpoch is a time before any file a test writes.
var testEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// fakePortalRoot is a repository root holding scripts/lib/portal.sh and a web/portal whose npm
// is a fake on PATH: `npm ci` makes node_modules, `npm run build` writes a one-page dist. Every
// npm call is appended to the returned log. The test cannot be parallel (PATH).
func fakePortalRoot(t *testing.T) (root, npmLog string) {
	t.Helper()
	root = t.TempDir()
	script, err := os.ReadFile(filepath.Join(RepoRoot(), "scripts", "lib", "portal.sh"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "fakebin")
	npmLog = filepath.Join(root, "npm.log")
	files := map[string]string{
		"scripts/lib/portal.sh":        string(script),
		"web/portal/package.json":      `{"name":"fake"}`,
		"web/portal/package-lock.json": `{"lockfileVersion":3}`,
		"web/portal/src/main.ts":       "console.log('app')\n",
	}
	for name, body := range files {
		writeTestFile(t, filepath.Join(root, name), body, 0o644)
	}
	writeTestFile(t, filepath.Join(bin, "npm"), `#!/bin/bash
echo "npm $*" >>`+npmLog+`
case "$1" in
  ci) rm -rf node_modules && mkdir -p node_modules ;;
  run) mkdir -p dist/assets && echo '<!doctype html><title>portal</title>' >dist/index.html && echo 'x' >dist/assets/app-1.js ;;
esac
`, 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return root, npmLog
}

func writeTestFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

// npmCalls returns the npm calls logged since the last call, and forgets them.
func npmCalls(t *testing.T, log string) []string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	_ = os.Remove(log)
	calls := strings.Fields(strings.ReplaceAll(string(data), "npm ", "npm-"))
	if len(calls) == 0 {
		return nil
	}
	return calls
}

// TestPortalBuildRunsNPMOnlyWhenNeeded runs portal_build as the supervisor does: npm ci when
// node_modules is missing or the lock file changed, npm run build when a source is newer than
// the build or the build is missing, nothing otherwise.
func TestPortalBuildRunsNPMOnlyWhenNeeded(t *testing.T) {
	root, npmLog := fakePortalRoot(t)
	cfg := DevConfig(root)
	cfg.Dir = t.TempDir()
	s := &Stack{cfg: cfg}
	portal := filepath.Join(root, "web", "portal")
	aged := func(path string) { // older than anything written from now on
		t.Helper()
		if err := os.Chtimes(path, testEpoch, testEpoch); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name     string
		change   func()
		wantHow  string
		wantCall []string
	}{
		{name: "first run", change: func() {}, wantHow: "built",
			wantCall: []string{"npm-ci", "--no-audit", "--no-fund", "npm-run", "build"}},
		{name: "nothing changed", change: func() {}, wantHow: "up to date"},
		{name: "source edited", change: func() {
			aged(filepath.Join(portal, "dist", "index.html"))
		}, wantHow: "built", wantCall: []string{"npm-run", "build"}},
		{name: "browser test output only", change: func() {
			aged(filepath.Join(portal, "dist", "index.html"))
			for _, f := range []string{"web/portal/src/main.ts", "web/portal/package.json", "web/portal/package-lock.json", "web/portal/node_modules/.securemsg-lock-sha256"} {
				aged(filepath.Join(root, f))
			}
			writeTestFile(t, filepath.Join(portal, "test-results", "run.json"), "{}", 0o644)
			writeTestFile(t, filepath.Join(portal, "dist", "extra.txt"), "x", 0o644)
		}, wantHow: "up to date"},
		{name: "lock file changed", change: func() {
			writeTestFile(t, filepath.Join(portal, "package-lock.json"), `{"lockfileVersion":3,"new":true}`, 0o644)
		}, wantHow: "built", wantCall: []string{"npm-ci", "--no-audit", "--no-fund", "npm-run", "build"}},
		{name: "dist removed", change: func() {
			if err := os.RemoveAll(filepath.Join(portal, "dist")); err != nil {
				t.Fatal(err)
			}
		}, wantHow: "built", wantCall: []string{"npm-run", "build"}},
		{name: "node_modules removed", change: func() {
			if err := os.RemoveAll(filepath.Join(portal, "node_modules")); err != nil {
				t.Fatal(err)
			}
		}, wantHow: "built", wantCall: []string{"npm-ci", "--no-audit", "--no-fund", "npm-run", "build"}},
	}
	for _, step := range steps {
		step.change()
		how, err := s.portalScript(t.Context(), "portal_build", "build.log")
		if err != nil {
			t.Fatalf("%s: portal_build error = %v", step.name, err)
		}
		if how != step.wantHow {
			t.Errorf("%s: portal_build = %q, want %q", step.name, how, step.wantHow)
		}
		if got := npmCalls(t, npmLog); !slices.Equal(got, step.wantCall) {
			t.Errorf("%s: npm calls = %q, want %q", step.name, got, step.wantCall)
		}
	}
	stamp, err := os.ReadFile(filepath.Join(portal, "node_modules", ".securemsg-lock-sha256"))
	if sum := mustSHA256(filepath.Join(portal, "package-lock.json")); err != nil || strings.TrimSpace(string(stamp)) != sum {
		t.Errorf("lock stamp = %q, %v; want the lock file's sha256 %s", stamp, err, sum)
	}
}

// TestPortalBuildWithoutNPM checks the error a machine without npm gets: it says what is
// missing, not what npm would have said.
func TestPortalBuildWithoutNPM(t *testing.T) {
	root, _ := fakePortalRoot(t)
	// A PATH with bash and the few tools portal.sh uses, but no npm.
	bin := filepath.Join(t.TempDir(), "bin")
	for _, tool := range []string{"bash", "sha256sum", "find", "flock", "mkdir", "touch", "dirname"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	cfg := DevConfig(root)
	cfg.Dir = t.TempDir()
	s := &Stack{cfg: cfg}
	_, err := s.portalScript(t.Context(), "portal_build", "build.log")
	if err == nil || !strings.Contains(err.Error(), "npm is not installed") {
		t.Errorf("portal_build without npm: error = %v, want one saying npm is not installed", err)
	}
}

// TestPortalComponentServesTheBuild brings the dev stack's portal component on a free port, in a
// repository root whose npm is a fake: the build runs, the server starts detached and answers
// with the stack's config; a second bring leaves it alone; Down stops it.
func TestPortalComponentServesTheBuild(t *testing.T) {
	root, _ := fakePortalRoot(t)
	// The binary comes from this repository; the fake root has no Go code.
	bin := t.TempDir()
	if err := goBuild(RepoRoot(), bin, portalPkg); err != nil {
		t.Fatal(err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DevConfig(root)
	cfg.Dir = t.TempDir()
	cfg.Ports.Portal = port
	cfg.StartTimeout = 20 * time.Second
	s := New(cfg)
	s.bins[portalPkg] = filepath.Join(bin, "portal")
	t.Cleanup(func() {
		if _, err := s.Down(); err != nil {
			t.Error(err)
		}
	})
	how, err := s.Portal.bring(t.Context(), t.Logf)
	if err != nil || how != "started" {
		t.Fatalf("bring() = %q, %v; want started", how, err)
	}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, cfg.PortalURL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}
	resp, body := get("/inbox")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<title>portal</title>") {
		t.Errorf("GET /inbox = %d %q, want 200 and the built page", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' http://127.0.0.1:8400 https://127.0.0.1:8441 ") {
		t.Errorf("GET /inbox: CSP = %q, want the stack's issuer and services in connect-src", csp)
	}
	_, body = get("/config.json")
	var config struct {
		Issuer, RedirectURI string
		Services            map[string]string
	}
	if err := json.Unmarshal([]byte(body), &config); err != nil {
		t.Fatalf("config.json %q: %v", body, err)
	}
	if config.Issuer != cfg.IssuerURL() || config.RedirectURI != cfg.PortalURL()+"/callback" || config.Services["audit"] != "https://127.0.0.1:8444" {
		t.Errorf("config.json = %+v, want the stack's issuer, redirect URI and service origins", config)
	}
	pid := s.Portal.PID()
	again := New(cfg)
	again.bins[portalPkg] = s.bins[portalPkg]
	if how, err := again.Portal.bring(t.Context(), t.Logf); err != nil || how != "running" || again.Portal.PID() != pid {
		t.Errorf("second bring() = %q, %v, pid %d; want running, pid %d", how, err, again.Portal.PID(), pid)
	}
	var status bytes.Buffer
	again.Status(t.Context(), &status)
	if !slices.ContainsFunc(strings.Split(status.String(), "\n"), func(line string) bool {
		f := strings.Fields(line)
		return len(f) > 3 && f[0] == "portal" && f[1] == cfg.PortalURL() && slices.Contains(f, "ok")
	}) {
		t.Errorf("Status() has no healthy portal line:\n%s", status.String())
	}
	stopped, err := again.Down()
	if err != nil || !slices.Contains(stopped, "portal") || alive(pid) {
		t.Errorf("Down() = %q, %v; portal alive: %v; want portal stopped", stopped, err, alive(pid))
	}
}
