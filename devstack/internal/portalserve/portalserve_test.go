package portalserve

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// wantCSP is the policy every response must carry, spelled out rather than built, so that a
// change to the policy shows in the test's diff.
const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
	"connect-src 'self' http://127.0.0.1:8400 https://127.0.0.1:8441 https://127.0.0.1:8442 https://127.0.0.1:8443 https://127.0.0.1:8444; " +
	"form-action 'none'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

const (
	indexHTML = `<!doctype html><html><head><script type="module" src="/assets/index-abc123.js"></script></head><body></body></html>`
	// secret sits beside the app directory; nothing may reach it.
	secret = "not for the browser"
)

func testConfig(dir string) Config {
	return Config{
		Dir: dir, Issuer: "http://127.0.0.1:8400", ClientID: "portal-web", RedirectURI: "http://127.0.0.1:8080/callback",
		Services: map[string]string{
			"messaging": "https://127.0.0.1:8441", "attachment": "https://127.0.0.1:8442",
			"notification": "https://127.0.0.1:8443", "audit": "https://127.0.0.1:8444",
		},
		Mailpit: "http://127.0.0.1:8025",
	}
}

// writeBuild writes a small vite-like build into <tmp>/dist, with a secret file beside it and
// links that try to leave it, and returns the dist folder.
func writeBuild(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	dist := filepath.Join(base, "dist")
	files := map[string]string{
		"index.html":               indexHTML,
		"assets/index-abc123.js":   "console.log('app')\n",
		"assets/index-abc123.css":  "body{margin:0}\n",
		"assets/logo-abc123.svg":   `<svg xmlns="http://www.w3.org/2000/svg"/>`,
		"assets/logo-abc123.png":   "\x89PNG\r\n\x1a\n",
		"assets/font-abc123.woff2": "wOF2",
		"assets/data-abc123.bin":   "\x00\x01",
		"favicon.svg":              `<svg xmlns="http://www.w3.org/2000/svg"/>`,
		"img/hero.png":             "\x89PNG\r\n\x1a\n",
		".vite/manifest.json":      `{"index.html":{}}`,
	}
	for name, body := range files {
		path := filepath.Join(dist, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"leak.txt": "../secret.txt", "assets/leak.js": "../../secret.txt"} {
		if err := os.Symlink(target, filepath.Join(dist, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
	return dist
}

// serve runs the portal's handler for cfg on a real listener.
func serve(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(body)}
}

// rawGet sends target verbatim on a fresh connection: Go's client would send a cleaned or
// escaped path, and traversal attempts must arrive as an attacker writes them.
func rawGet(t *testing.T, srv *httptest.Server, target string) response {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(body)}
}

// TestSafetyHeadersOnEveryResponse checks the CSP and the other safety headers on every kind of
// answer: a file, an asset, the fallback page, the config, health, 400, 404, 405 and 503.
func TestSafetyHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	built := serve(t, testConfig(writeBuild(t)))
	unbuilt := serve(t, testConfig(filepath.Join(t.TempDir(), "dist")))
	tests := []struct {
		name     string
		srv      *httptest.Server
		method   string
		path     string
		raw      bool
		wantCode int
	}{
		{name: "page", srv: built, method: http.MethodGet, path: "/", wantCode: http.StatusOK},
		{name: "page by HEAD", srv: built, method: http.MethodHead, path: "/", wantCode: http.StatusOK},
		{name: "asset", srv: built, method: http.MethodGet, path: "/assets/index-abc123.js", wantCode: http.StatusOK},
		{name: "file outside assets", srv: built, method: http.MethodGet, path: "/favicon.svg", wantCode: http.StatusOK},
		{name: "fallback", srv: built, method: http.MethodGet, path: "/callback", wantCode: http.StatusOK},
		{name: "config", srv: built, method: http.MethodGet, path: "/config.json", wantCode: http.StatusOK},
		{name: "health", srv: built, method: http.MethodGet, path: "/healthz", wantCode: http.StatusOK},
		{name: "missing asset", srv: built, method: http.MethodGet, path: "/assets/gone.js", wantCode: http.StatusNotFound},
		{name: "traversal", srv: built, method: http.MethodGet, path: "/../secret.txt", raw: true, wantCode: http.StatusBadRequest},
		{name: "POST", srv: built, method: http.MethodPost, path: "/", wantCode: http.StatusMethodNotAllowed},
		{name: "DELETE config", srv: built, method: http.MethodDelete, path: "/config.json", wantCode: http.StatusMethodNotAllowed},
		{name: "not built", srv: unbuilt, method: http.MethodGet, path: "/", wantCode: http.StatusServiceUnavailable},
		{name: "not built health", srv: unbuilt, method: http.MethodGet, path: "/healthz", wantCode: http.StatusServiceUnavailable},
	}
	want := map[string]string{
		"Content-Security-Policy":    wantCSP,
		"X-Content-Type-Options":     "nosniff",
		"Referrer-Policy":            "no-referrer",
		"X-Frame-Options":            "DENY",
		"Cross-Origin-Opener-Policy": "same-origin",
		"Permissions-Policy":         "camera=(), microphone=(), geolocation=()",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got response
			if tt.raw {
				got = rawGet(t, tt.srv, tt.path)
			} else {
				got = do(t, tt.method, tt.srv.URL+tt.path)
			}
			if got.code != tt.wantCode {
				t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, got.code, tt.wantCode)
			}
			for k, v := range want {
				if g := got.header.Values(k); len(g) != 1 || g[0] != v {
					t.Errorf("%s %s: %s = %q, want [%q]", tt.method, tt.path, k, g, v)
				}
			}
			if strings.Contains(got.header.Get("Content-Security-Policy"), "unsafe-") {
				t.Errorf("%s %s: CSP allows something unsafe: %s", tt.method, tt.path, got.header.Get("Content-Security-Policy"))
			}
		})
	}
}

// TestFiles checks what each kind of file is served as, and how long it may be kept.
func TestFiles(t *testing.T) {
	t.Parallel()
	srv := serve(t, testConfig(writeBuild(t)))
	tests := []struct {
		path, wantType, wantCache, wantBody string
	}{
		{"/assets/index-abc123.js", "text/javascript; charset=utf-8", immutable, "console.log('app')\n"},
		{"/assets/index-abc123.css", "text/css; charset=utf-8", immutable, "body{margin:0}\n"},
		{"/assets/logo-abc123.svg", "image/svg+xml", immutable, `<svg xmlns="http://www.w3.org/2000/svg"/>`},
		{"/assets/logo-abc123.png", "image/png", immutable, "\x89PNG\r\n\x1a\n"},
		{"/assets/font-abc123.woff2", "font/woff2", immutable, "wOF2"},
		{"/assets/data-abc123.bin", "application/octet-stream", immutable, "\x00\x01"},
		{"/favicon.svg", "image/svg+xml", "no-store", `<svg xmlns="http://www.w3.org/2000/svg"/>`},
		{"/img/hero.png", "image/png", "no-store", "\x89PNG\r\n\x1a\n"},
		{"/", "text/html; charset=utf-8", "no-store", indexHTML},
		{"/index.html", "text/html; charset=utf-8", "no-store", indexHTML},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			got := do(t, http.MethodGet, srv.URL+tt.path)
			if got.code != http.StatusOK || got.body != tt.wantBody {
				t.Errorf("GET %s = %d %q, want 200 %q", tt.path, got.code, got.body, tt.wantBody)
			}
			if g := got.header.Get("Content-Type"); g != tt.wantType {
				t.Errorf("GET %s: Content-Type = %q, want %q", tt.path, g, tt.wantType)
			}
			if g := got.header.Get("Cache-Control"); g != tt.wantCache {
				t.Errorf("GET %s: Cache-Control = %q, want %q", tt.path, g, tt.wantCache)
			}
		})
	}
	head := do(t, http.MethodHead, srv.URL+"/assets/index-abc123.js")
	if head.code != http.StatusOK || head.body != "" || head.header.Get("Content-Length") != "19" {
		t.Errorf("HEAD asset = %d, body %q, Content-Length %q; want 200, no body, 19", head.code, head.body, head.header.Get("Content-Length"))
	}
}

// TestFallbackToThePage checks that the app's routes get index.html, never stored, while a
// missing asset, a hidden file and a directory do not.
func TestFallbackToThePage(t *testing.T) {
	t.Parallel()
	srv := serve(t, testConfig(writeBuild(t)))
	tests := []struct {
		path     string
		wantCode int
		wantPage bool
	}{
		{path: "/callback?code=abc&state=xyz", wantCode: http.StatusOK, wantPage: true},
		{path: "/inbox", wantCode: http.StatusOK, wantPage: true},
		{path: "/threads/0b7c6a52-1f7e-4a59-9d1c-5b2f2f0d9b1e", wantCode: http.StatusOK, wantPage: true},
		{path: "/inbox/", wantCode: http.StatusOK, wantPage: true},
		{path: "/img", wantCode: http.StatusOK, wantPage: true},  // a directory: the page, no listing
		{path: "/img/", wantCode: http.StatusOK, wantPage: true}, // the same
		{path: "/assets/gone-abc123.js", wantCode: http.StatusNotFound},
		{path: "/assets/", wantCode: http.StatusNotFound},
		{path: "/.vite/manifest.json", wantCode: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			got := do(t, http.MethodGet, srv.URL+tt.path)
			if got.code != tt.wantCode {
				t.Errorf("GET %s: status %d, want %d", tt.path, got.code, tt.wantCode)
			}
			if isPage := got.body == indexHTML; isPage != tt.wantPage {
				t.Errorf("GET %s: body %q; want the page: %v", tt.path, got.body, tt.wantPage)
			}
			if tt.wantPage && (got.header.Get("Content-Type") != "text/html; charset=utf-8" || got.header.Get("Cache-Control") != "no-store") {
				t.Errorf("GET %s: Content-Type %q, Cache-Control %q; want text/html, no-store", tt.path,
					got.header.Get("Content-Type"), got.header.Get("Cache-Control"))
			}
			for _, listed := range []string{"index-abc123", "hero.png", "manifest"} {
				if strings.Contains(got.body, listed) && !tt.wantPage {
					t.Errorf("GET %s: body lists %s: %q", tt.path, listed, got.body)
				}
			}
		})
	}
}

// TestTraversalRefused sends paths that try to leave the app directory, by "..", in any
// encoding, or by a symbolic link in the build: none may answer the file beside it.
func TestTraversalRefused(t *testing.T) {
	t.Parallel()
	srv := serve(t, testConfig(writeBuild(t)))
	tests := []struct {
		target   string
		wantCode int
	}{
		{target: "/../secret.txt", wantCode: http.StatusBadRequest},
		{target: "/assets/../../secret.txt", wantCode: http.StatusBadRequest},
		{target: "/%2e%2e/secret.txt", wantCode: http.StatusBadRequest},
		{target: "/..%2fsecret.txt", wantCode: http.StatusBadRequest},
		{target: "/assets/..%5c..%5csecret.txt", wantCode: http.StatusBadRequest},
		{target: "/secret.txt%00.js", wantCode: http.StatusBadRequest},
		{target: "/leak.txt", wantCode: http.StatusOK},             // a link out of the tree is no file: the page
		{target: "/assets/leak.js", wantCode: http.StatusNotFound}, // and under assets/, missing
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			t.Parallel()
			got := rawGet(t, srv, tt.target)
			if got.code != tt.wantCode {
				t.Errorf("GET %s: status %d, want %d (body %q)", tt.target, got.code, tt.wantCode, got.body)
			}
			if strings.Contains(got.body, secret) {
				t.Errorf("GET %s answered the file outside the app directory", tt.target)
			}
		})
	}
}

func TestConfigJSON(t *testing.T) {
	t.Parallel()
	dist := writeBuild(t)
	withoutMail := testConfig(dist)
	withoutMail.Mailpit = ""
	// Origins are given with a trailing slash and upper case: the app gets them normalised.
	sloppy := testConfig(dist)
	sloppy.Services = map[string]string{"messaging": "https://LOCALHOST:8441/", "attachment": "https://127.0.0.1:8442",
		"notification": "https://127.0.0.1:8443", "audit": "https://127.0.0.1:8444"}
	services := map[string]any{"messaging": "https://127.0.0.1:8441", "attachment": "https://127.0.0.1:8442",
		"notification": "https://127.0.0.1:8443", "audit": "https://127.0.0.1:8444"}
	tests := []struct {
		name string
		cfg  Config
		want map[string]any
	}{
		{name: "dev stack", cfg: testConfig(dist), want: map[string]any{
			"issuer": "http://127.0.0.1:8400", "clientId": "portal-web", "redirectUri": "http://127.0.0.1:8080/callback",
			"services": services, "mailpit": "http://127.0.0.1:8025"}},
		{name: "no mailpit", cfg: withoutMail, want: map[string]any{
			"issuer": "http://127.0.0.1:8400", "clientId": "portal-web", "redirectUri": "http://127.0.0.1:8080/callback",
			"services": services}},
		{name: "origins normalised", cfg: sloppy, want: map[string]any{
			"issuer": "http://127.0.0.1:8400", "clientId": "portal-web", "redirectUri": "http://127.0.0.1:8080/callback",
			"services": map[string]any{"messaging": "https://localhost:8441", "attachment": "https://127.0.0.1:8442",
				"notification": "https://127.0.0.1:8443", "audit": "https://127.0.0.1:8444"},
			"mailpit": "http://127.0.0.1:8025"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := do(t, http.MethodGet, serve(t, tt.cfg).URL+"/config.json")
			if got.code != http.StatusOK || got.header.Get("Content-Type") != "application/json" || got.header.Get("Cache-Control") != "no-store" {
				t.Errorf("GET /config.json = %d, Content-Type %q, Cache-Control %q; want 200, application/json, no-store",
					got.code, got.header.Get("Content-Type"), got.header.Get("Cache-Control"))
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(got.body), &body); err != nil {
				t.Fatalf("GET /config.json: %v in %q", err, got.body)
			}
			if diff := cmp.Diff(tt.want, body); diff != "" {
				t.Errorf("GET /config.json mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNotBuilt checks the answer while there is no build: a plain message saying how to build,
// for the app's paths and for health; the config does not depend on the build.
func TestNotBuilt(t *testing.T) {
	t.Parallel()
	empty := t.TempDir() // a dist folder a failed build left without index.html
	if err := os.MkdirAll(filepath.Join(empty, "assets"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"no folder": filepath.Join(t.TempDir(), "dist"), "no index.html": empty} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := serve(t, testConfig(dir))
			for _, path := range []string{"/", "/inbox", "/assets/index-abc123.js", "/healthz"} {
				got := do(t, http.MethodGet, srv.URL+path)
				if got.code != http.StatusServiceUnavailable || !strings.Contains(got.body, "npm run build") ||
					!strings.HasPrefix(got.header.Get("Content-Type"), "text/plain") {
					t.Errorf("GET %s = %d %q (%s); want 503, a plain message naming the build", path, got.code, got.body, got.header.Get("Content-Type"))
				}
			}
			if got := do(t, http.MethodGet, srv.URL+"/config.json"); got.code != http.StatusOK {
				t.Errorf("GET /config.json = %d, want 200", got.code)
			}
		})
	}
}

func TestMethodsOtherThanGETAndHEADRefused(t *testing.T) {
	t.Parallel()
	srv := serve(t, testConfig(writeBuild(t)))
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		for _, path := range []string{"/", "/callback", "/assets/index-abc123.js", "/config.json", "/healthz"} {
			got := do(t, method, srv.URL+path)
			if got.code != http.StatusMethodNotAllowed || got.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s = %d, Allow %q; want 405, GET, HEAD", method, path, got.code, got.header.Get("Allow"))
			}
		}
	}
}

func TestListenRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr    string
		wantErr string
	}{
		{addr: "127.0.0.1:0"},
		{addr: "[::1]:0"},
		{addr: "localhost:0"},
		{addr: "0.0.0.0:0", wantErr: "only listens on loopback"},
		{addr: ":0", wantErr: "only listens on loopback"},
		{addr: "[::]:0", wantErr: "only listens on loopback"},
		{addr: "192.0.2.10:8080", wantErr: "only listens on loopback"},
		{addr: "portal.example.org:8080", wantErr: "only listens on loopback"},
		{addr: "nonsense", wantErr: "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			ln, err := Listen(tt.addr)
			if tt.wantErr == "" {
				if err != nil {
					if strings.HasPrefix(tt.addr, "[::1]") && strings.Contains(err.Error(), "listen:") {
						t.Skipf("no IPv6 loopback here: %v", err)
					}
					t.Fatalf("Listen(%q) error = %v", tt.addr, err)
				}
				_ = ln.Close()
				return
			}
			if err == nil {
				_ = ln.Close()
				t.Fatalf("Listen(%q) = %s, want an error", tt.addr, ln.Addr())
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Listen(%q) error = %v, want it to say %q", tt.addr, err, tt.wantErr)
			}
		})
	}
}

// TestNewRefusesBadConfig checks that every problem is reported, at once.
func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		tweak func(*Config)
		want  []string
	}{
		{name: "no dir", tweak: func(c *Config) { c.Dir = "" }, want: []string{"no app directory"}},
		{name: "issuer not a URL", tweak: func(c *Config) { c.Issuer = "127.0.0.1:8400" }, want: []string{"issuer"}},
		{name: "no client", tweak: func(c *Config) { c.ClientID = "" }, want: []string{"no client id"}},
		{name: "missing services", tweak: func(c *Config) { delete(c.Services, "audit"); delete(c.Services, "attachment") },
			want: []string{"no origin for service attachment", "no origin for service audit"}},
		{name: "unknown service", tweak: func(c *Config) { c.Services["billing"] = "https://127.0.0.1:9999" }, want: []string{`unknown service "billing"`}},
		{name: "service with a path", tweak: func(c *Config) { c.Services["messaging"] = "https://127.0.0.1:8441/api" }, want: []string{"without a path"}},
		{name: "service not http", tweak: func(c *Config) { c.Services["messaging"] = "wss://127.0.0.1:8441" }, want: []string{"http:// or https://"}},
		{name: "host that would bend the CSP", tweak: func(c *Config) { c.Services["messaging"] = "https://a;script-src*" },
			want: []string{"host name"}},
		{name: "all at once", tweak: func(c *Config) { c.Dir, c.ClientID, c.Mailpit = "", "", "mailto:x" },
			want: []string{"no app directory", "no client id", "mailpit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t.TempDir())
			tt.tweak(&cfg)
			_, err := New(cfg)
			if err == nil {
				t.Fatalf("New() = nil error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() error = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

func TestServiceOriginsFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		values  []string
		want    ServiceOrigins
		wantErr bool
	}{
		{name: "repeated", values: []string{"messaging=https://127.0.0.1:8441", "audit=https://127.0.0.1:8444"},
			want: ServiceOrigins{"messaging": "https://127.0.0.1:8441", "audit": "https://127.0.0.1:8444"}},
		{name: "comma list", values: []string{"messaging=https://127.0.0.1:8441, attachment=https://127.0.0.1:8442"},
			want: ServiceOrigins{"messaging": "https://127.0.0.1:8441", "attachment": "https://127.0.0.1:8442"}},
		{name: "twice", values: []string{"messaging=https://a:1", "messaging=https://b:2"}, wantErr: true},
		{name: "no origin", values: []string{"messaging"}, wantErr: true},
		{name: "no name", values: []string{"=https://127.0.0.1:8441"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ServiceOrigins{}
			var err error
			for _, v := range tt.values {
				if err = got.Set(v); err != nil {
					break
				}
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("Set(%q) error = %v, want error %v", tt.values, err, tt.wantErr)
			}
			if !tt.wantErr {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Set(%q) mismatch (-want +got):\n%s", tt.values, diff)
				}
			}
		})
	}
	if got, want := (ServiceOrigins{"audit": "https://x:4", "messaging": "https://x:1"}).String(), "messaging=https://x:1,audit=https://x:4"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
