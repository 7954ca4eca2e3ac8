package portalserve

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// notBuilt is the answer while the app directory has no index.html.
const notBuilt = "the portal is not built: run `npm ci && npm run build` in web/portal " +
	"(or `make up`, which builds it), then reload\n"

// immutable is the cache policy of vite's assets/, whose file names carry a hash of their
// content: a changed file gets a new name, so a browser may keep every one for good.
const immutable = "public, max-age=31536000, immutable"

// contentTypes names the type of every kind of file a vite build writes. The handler sets it
// itself rather than through mime.TypeByExtension, which reads the machine's /etc/mime.types
// (some map .js to application/javascript, others know no .woff2): under nosniff a module
// script must be a JavaScript type, and the app's behaviour must not depend on the machine.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json",
	".webmanifest": "application/manifest+json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".ico":         "image/x-icon",
	".woff2":       "font/woff2",
	".woff":        "font/woff",
	".txt":         "text/plain; charset=utf-8",
	".wasm":        "application/wasm",
}

// ServeHTTP sets the safety headers first, so that every answer, errors included, carries them.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		plain(w, http.StatusMethodNotAllowed, "method not allowed\n")
		return
	}
	switch r.URL.Path {
	case "/config.json":
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(s.config) // a write error is the browser going away
	case "/healthz":
		if !s.built() {
			plain(w, http.StatusServiceUnavailable, notBuilt)
			return
		}
		plain(w, http.StatusOK, "ok\n")
	default:
		s.serveApp(w, r)
	}
}

// serveApp answers a file of the build, or index.html for any path that is not one, so that the
// app's router handles /callback, /inbox, /threads/<id>. Only assets/ answers 404 for a missing
// file (a stale page asking for an old bundle must fail as a missing script, not get HTML), and
// so does any hidden path.
//
// Files are opened through an os.Root on the directory, which refuses any name that leaves it,
// by ".." or by a symbolic link; http.FileServerFS over os.DirFS would follow a link out of the
// tree, list directories and redirect /index.html, so the handler decides what is a file itself
// and hands the open file to http.ServeContent (Range, conditional requests, HEAD).
func (s *server) serveApp(w http.ResponseWriter, r *http.Request) {
	name, ok := fileName(r.URL.Path)
	if !ok {
		plain(w, http.StatusBadRequest, "invalid path\n")
		return
	}
	// Opened per request: a rebuild may replace the directory, and an os.Root would keep
	// serving the deleted one.
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		plain(w, http.StatusServiceUnavailable, notBuilt)
		return
	}
	defer func() { _ = root.Close() }() // read-only
	index, indexInfo, err := openFile(root, "index.html")
	if err != nil {
		plain(w, http.StatusServiceUnavailable, notBuilt)
		return
	}
	defer func() { _ = index.Close() }() // read-only

	if name != "" && name != "index.html" && servable(name) {
		if f, info, err := openFile(root, name); err == nil {
			defer func() { _ = f.Close() }() // read-only
			cache := "no-store"
			if strings.HasPrefix(name, "assets/") {
				cache = immutable
			}
			serveFile(w, r, f, info, cache)
			return
		}
	}
	if strings.HasPrefix(name, "assets/") || hidden(name) {
		plain(w, http.StatusNotFound, "not found\n")
		return
	}
	// The page itself is never stored: it names the current bundles, and a stored copy would
	// keep loading old ones after a rebuild.
	serveFile(w, r, index, indexInfo, "no-store")
}

// fileName turns a request path into a name inside the app directory ("" for "/"). It refuses
// (false) any path with a ".." segment, however it was encoded, and a NUL or a backslash,
// rather than resolving it: no legitimate link of the app has one.
func fileName(urlPath string) (string, bool) {
	name := strings.TrimPrefix(urlPath, "/")
	if !strings.HasPrefix(urlPath, "/") || strings.ContainsAny(name, "\x00\\") {
		return "", false
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == ".." {
			return "", false
		}
	}
	return name, true
}

// servable reports whether name may be a file the server hands out: a clean relative path
// (fs.ValidPath: no empty, "." or ".." segments) that is not hidden.
func servable(name string) bool { return fs.ValidPath(name) && !hidden(name) }

// hidden reports whether a segment of name starts with a dot: dot-files of the build (vite's
// .vite/manifest.json) stay private, and such a path is no route of the app either.
func hidden(name string) bool {
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, ".") {
			return true
		}
	}
	return false
}

// openFile opens name under root when it is a regular file (a directory is not served: no
// listings).
func openFile(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		_ = f.Close() // read-only
		return nil, nil, err
	}
	return f, info, nil
}

// serveFile sends f with its content type (from contentTypes; anything else is an opaque
// download, which nosniff keeps from being read as script or HTML) and cache policy.
func serveFile(w http.ResponseWriter, r *http.Request, f *os.File, info fs.FileInfo, cache string) {
	ctype, ok := contentTypes[strings.ToLower(path.Ext(info.Name()))]
	if !ok {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", cache)
	http.ServeContent(w, r, info.Name(), info.ModTime(), f)
}

// plain answers a short text message that no cache keeps.
func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg)) // a write error is the browser going away
}

// built reports whether the app directory holds an index.html, for the readiness check.
func (s *server) built() bool {
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return false
	}
	defer func() { _ = root.Close() }() // read-only
	f, _, err := openFile(root, "index.html")
	if err != nil {
		return false
	}
	_ = f.Close() // read-only
	return true
}
