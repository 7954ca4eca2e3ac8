package transit

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Version is reported by sys/health. It names the Vault release whose transit behaviour this
// server follows, with a suffix so nobody mistakes it for Vault.
const Version = "1.21.0+transitdev"

// maxRequestSize is Vault's default max_request_size (32 MiB).
const maxRequestSize = 32 << 20

// mountsKey is where the mount table is stored, beside the mounts' own data.
const mountsKey = "core/mounts"

// Config configures a Server.
type Config struct {
	// RootToken is the only token accepted in X-Vault-Token (or Authorization: Bearer).
	RootToken string
	// DataDir, when set, persists mounts and keys to a JSON file there, so a restarted server
	// still unwraps what it wrapped before. Empty keeps everything in memory.
	DataDir string
	// Logger receives one JSON line per request (method, path, status, duration); never bodies.
	// Nil discards.
	Logger *slog.Logger
}

// Server is a Vault-compatible HTTP handler for sys/health, sys/mounts and the transit engine.
// It is safe for concurrent use.
type Server struct {
	token     string
	log       *slog.Logger
	store     *fileStorage
	sealKey   []byte // binds snapshots to this key store (see snapshot.go)
	clusterID string

	// mu guards mounts. Logical requests hold it for reading while they run, so a snapshot
	// restore (which holds it for writing) waits for them and none runs on a replaced mount.
	mu     sync.RWMutex
	mounts map[string]*mount // by path with trailing slash, e.g. "transit/"
}

// mountEntry is a mount's persisted description.
type mountEntry struct {
	Path        string `json:"path"`
	Type        string `json:"type"`
	Description string `json:"description"`
	UUID        string `json:"uuid"`
	Accessor    string `json:"accessor"`
}

// mount is an enabled transit engine.
type mount struct {
	entry   mountEntry
	backend *backend
	view    logical.Storage
}

// New opens (or creates) the server's state. It fails if cfg.RootToken is empty or the data
// directory holds state it cannot read.
func New(cfg Config) (*Server, error) {
	if cfg.RootToken == "" {
		return nil, errors.New("transit dev server: empty root token")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store, err := openFileStorage(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	sealKey, err := loadSealKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{token: cfg.RootToken, log: log, store: store, sealKey: sealKey, clusterID: newUUID()}
	raw, err := store.Get(context.Background(), mountsKey)
	if err != nil {
		return nil, err
	}
	var table []byte
	if raw != nil {
		table = raw.Value
	}
	if s.mounts, err = s.mountsFrom(table); err != nil {
		return nil, err
	}
	return s, nil
}

// mountsFrom builds the mounts of a stored mount table (nil: none), each with a fresh backend,
// so no key ring cached by an earlier backend outlives a restore.
func (s *Server) mountsFrom(table []byte) (map[string]*mount, error) {
	mounts := map[string]*mount{}
	if table == nil {
		return mounts, nil
	}
	var entries []mountEntry
	if err := json.Unmarshal(table, &entries); err != nil {
		return nil, fmt.Errorf("decode mount table: %w", err)
	}
	for _, e := range entries {
		switch {
		case e.Type != "transit":
			return nil, fmt.Errorf("mount table: mount of type %q (only transit is served)", truncateName(e.Type))
		case e.UUID == "" || e.Path == "" || normalizeMountPath(e.Path) != e.Path || builtinMounts[e.Path] != "":
			return nil, fmt.Errorf("mount table: malformed mount %q", truncateName(e.Path))
		case mounts[e.Path] != nil:
			return nil, fmt.Errorf("mount table: %q mounted twice", truncateName(e.Path))
		}
		m, err := s.newMount(e)
		if err != nil {
			return nil, err
		}
		mounts[e.Path] = m
	}
	return mounts, nil
}

func (s *Server) newMount(e mountEntry) (*mount, error) {
	b, err := newBackend()
	if err != nil {
		return nil, err
	}
	return &mount{entry: e, backend: b, view: logical.NewStorageView(s.store, "logical/"+e.UUID+"/")}, nil
}

// saveMountsLocked persists the mount table. The caller holds s.mu for writing.
func (s *Server) saveMountsLocked(ctx context.Context) error {
	entries := make([]mountEntry, 0, len(s.mounts))
	for _, m := range s.mounts {
		entries = append(entries, m.entry)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	raw, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	return s.store.Put(ctx, &logical.StorageEntry{Key: mountsKey, Value: raw})
}

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	reqID := newUUID()
	errText := s.serve(rec, r, reqID)
	attrs := []slog.Attr{
		slog.String("request_id", reqID),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path), // key and mount names only; bodies are never logged
		slog.Int("status", rec.status),
		slog.Duration("duration", time.Since(start)),
	}
	level := slog.LevelInfo
	if rec.status >= 500 {
		// Internal errors come from keysutil or storage and carry no request data.
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", errText))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// serve answers one request and returns the error text of a 5xx answer, for the log.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, reqID string) string {
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		logical.RespondError(w, http.StatusNotFound, nil)
		return ""
	}
	if path == "sys/health" {
		s.handleHealth(w, r)
		return ""
	}
	if !s.authorized(r) {
		logical.RespondError(w, http.StatusForbidden, logical.ErrPermissionDenied)
		return ""
	}
	if rest, ok := strings.CutPrefix(path, "sys/storage/raft/"); ok {
		// Before the JSON body parsing: a snapshot is a binary body.
		return s.handleRaftSnapshot(w, r, rest)
	}
	op, ok := operation(r)
	if !ok {
		logical.RespondError(w, http.StatusMethodNotAllowed, nil)
		return ""
	}
	var data map[string]any
	switch op {
	case logical.UpdateOperation, logical.DeleteOperation:
		var err error
		if data, err = parseJSONBody(w, r); err != nil {
			status := http.StatusBadRequest
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				status = http.StatusRequestEntityTooLarge
			}
			logical.RespondError(w, status, err)
			return ""
		}
	case logical.ReadOperation:
		// Vault hands GET query parameters to the engine as request data.
		for k, v := range r.URL.Query() {
			if data == nil {
				data = map[string]any{}
			}
			data[k] = v[0]
		}
	}
	if rest, ok := strings.CutPrefix(path, "sys/"); ok {
		return s.handleSys(w, r, op, rest, data, reqID)
	}
	return s.handleLogical(w, r, op, path, data, reqID)
}

// authorized checks the token in constant time.
func (s *Server) authorized(r *http.Request) bool {
	tok := r.Header.Get("X-Vault-Token")
	if tok == "" {
		tok, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) == 1
}

// operation maps the HTTP method to a logical operation as Vault does; writes are refined into
// create or update later by the engine's existence check.
func operation(r *http.Request) (logical.Operation, bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if l, err := strconv.ParseBool(r.URL.Query().Get("list")); err == nil && l {
			return logical.ListOperation, true
		}
		return logical.ReadOperation, true
	case "LIST":
		return logical.ListOperation, true
	case http.MethodPost, http.MethodPut:
		return logical.UpdateOperation, true
	case http.MethodDelete:
		return logical.DeleteOperation, true
	}
	return "", false
}

// parseJSONBody decodes a JSON object body (empty is nil) with numbers kept as json.Number, as
// Vault's HTTP layer does.
func parseJSONBody(w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	body := http.MaxBytesReader(w, r.Body, maxRequestSize)
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	return decodeJSONObject(raw)
}

// decodeJSONObject is the request-body decoder (fuzzed). Only the first JSON value is read, as
// in Vault; it must be an object or null.
func decodeJSONObject(raw []byte) (map[string]any, error) {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("failed to parse JSON input: %w", err)
	}
	return out, nil
}

// handleLogical routes a request to the transit mount whose path prefixes it.
func (s *Server) handleLogical(w http.ResponseWriter, r *http.Request, op logical.Operation, path string, data map[string]any, reqID string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var m *mount
	for p, cand := range s.mounts {
		if strings.HasPrefix(path, p) && (m == nil || len(p) > len(m.entry.Path)) {
			m = cand
		}
	}
	if m == nil {
		logical.RespondError(w, http.StatusNotFound, fmt.Errorf("no handler for route %q. route entry not found.", path)) //nolint:revive,staticcheck // Vault's exact wording
		return ""
	}
	subPath := strings.TrimPrefix(path, m.entry.Path)
	if op == logical.ListOperation && !strings.HasSuffix(subPath, "/") {
		subPath += "/"
	}
	req := &logical.Request{
		ID:          reqID,
		Operation:   op,
		Path:        subPath,
		Data:        data,
		Storage:     m.view,
		MountPoint:  m.entry.Path,
		MountType:   m.entry.Type,
		ClientToken: s.token,
	}
	ctx := r.Context()
	if op == logical.UpdateOperation {
		checkFound, exists, err := m.backend.HandleExistenceCheck(ctx, req)
		switch {
		case errors.Is(err, logical.ErrUnsupportedPath):
			// As in Vault: let HandleRequest answer the unknown path with its 404.
			checkFound = false
		case err != nil:
			logical.RespondError(w, http.StatusInternalServerError, fmt.Errorf("failed to run existence check: %w", err))
			return err.Error()
		}
		if checkFound && !exists {
			req.Operation = logical.CreateOperation
		}
	}
	resp, err := m.backend.HandleRequest(ctx, req)
	return respondLogical(w, req, resp, err)
}

// respondLogical writes an engine's answer the way Vault's HTTP layer does: errors as
// {"errors": [...]} with logical.RespondErrorCommon's status, raw responses (batch answers with
// a chosen status) verbatim, no response as 204, anything else wrapped in {"data": ...}.
func respondLogical(w http.ResponseWriter, req *logical.Request, resp *logical.Response, err error) string {
	if err == nil && resp != nil && resp.Data != nil {
		if code, ok := resp.Data[logical.HTTPStatusCode].(int); ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			if body, ok := resp.Data[logical.HTTPRawBody].(string); ok {
				_, _ = io.WriteString(w, body)
			}
			return ""
		}
	}
	status, rerr := logical.RespondErrorCommon(req, resp, err)
	if status != 0 || rerr != nil {
		if status == 0 {
			status = http.StatusInternalServerError
		}
		logical.RespondError(w, status, rerr)
		if status >= 500 && rerr != nil {
			return rerr.Error()
		}
		return ""
	}
	if resp == nil {
		w.WriteHeader(http.StatusNoContent)
		return ""
	}
	httpResp := logical.LogicalResponseToHTTPResponse(resp)
	httpResp.RequestID = req.ID
	httpResp.MountType = req.MountType
	respondJSON(w, http.StatusOK, httpResp)
	return ""
}

func respondJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// handleHealth answers sys/health like an initialized, unsealed, active Vault. No token is
// needed, as in Vault. activecode overrides the 200, as in Vault.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		logical.RespondError(w, http.StatusMethodNotAllowed, nil)
		return
	}
	code := http.StatusOK
	if v := r.URL.Query().Get("activecode"); v != "" {
		if c, err := strconv.Atoi(v); err == nil && c >= 100 && c <= 599 {
			code = c
		}
	}
	respondJSON(w, code, map[string]any{
		"initialized":                  true,
		"sealed":                       false,
		"standby":                      false,
		"performance_standby":          false,
		"replication_performance_mode": "disabled",
		"replication_dr_mode":          "disabled",
		"server_time_utc":              time.Now().Unix(),
		"version":                      Version,
		"enterprise":                   false,
		"cluster_name":                 "transitdev",
		"cluster_id":                   s.clusterID,
		"echo_duration_ms":             0,
		"clock_skew_ms":                0,
	})
}

// builtinMounts are the mounts every Vault has; they cannot be replaced or mounted under.
var builtinMounts = map[string]string{"sys/": "system", "cubbyhole/": "cubbyhole", "identity/": "identity"}

// handleSys serves sys/mounts and sys/mounts/<path>; other sys paths are 404.
func (s *Server) handleSys(w http.ResponseWriter, r *http.Request, op logical.Operation, rest string, data map[string]any, reqID string) string {
	switch {
	case rest == "mounts" && op == logical.ReadOperation:
		s.listMounts(w, reqID)
	case strings.HasPrefix(rest, "mounts/"):
		p := normalizeMountPath(strings.TrimPrefix(rest, "mounts/"))
		if p == "/" {
			logical.RespondError(w, http.StatusBadRequest, errors.New("path cannot be empty"))
			return ""
		}
		switch op {
		case logical.UpdateOperation:
			return s.enableMount(r.Context(), w, p, data)
		case logical.DeleteOperation:
			return s.disableMount(r.Context(), w, p)
		case logical.ReadOperation:
			s.readMount(w, p, reqID)
		default:
			logical.RespondError(w, http.StatusMethodNotAllowed, logical.ErrUnsupportedOperation)
		}
	case rest == "mounts":
		logical.RespondError(w, http.StatusMethodNotAllowed, logical.ErrUnsupportedOperation)
	default:
		logical.RespondError(w, http.StatusNotFound, logical.ErrUnsupportedPath)
	}
	return ""
}

func normalizeMountPath(p string) string {
	p = strings.Trim(p, "/")
	return p + "/"
}

// mountOutput is one mount in Vault's sys/mounts shape (what api.MountOutput decodes).
func mountOutput(path, typ, desc, uuid, accessor string) map[string]any {
	return map[string]any{
		"type":        typ,
		"description": desc,
		"accessor":    accessor,
		"uuid":        uuid,
		"config": map[string]any{
			"default_lease_ttl": 0,
			"max_lease_ttl":     0,
			"force_no_cache":    false,
		},
		"options":                 nil,
		"local":                   path == "cubbyhole/",
		"seal_wrap":               false,
		"external_entropy_access": false,
		"plugin_version":          "",
		"running_plugin_version":  "v" + strings.Split(Version, "+")[0] + "+builtin.vault",
		"running_sha256":          "",
	}
}

func (s *Server) listMounts(w http.ResponseWriter, reqID string) {
	data := map[string]any{}
	for p, typ := range builtinMounts {
		data[p] = mountOutput(p, typ, "", "", typ+"_builtin")
	}
	s.mu.RLock()
	for p, m := range s.mounts {
		data[p] = mountOutput(p, m.entry.Type, m.entry.Description, m.entry.UUID, m.entry.Accessor)
	}
	s.mu.RUnlock()
	// Vault returns the table both under "data" and at the top level (for old clients).
	body := map[string]any{
		"request_id": reqID, "lease_id": "", "renewable": false, "lease_duration": 0,
		"wrap_info": nil, "warnings": nil, "auth": nil, "mount_type": "system",
	}
	for p, v := range data {
		body[p] = v
	}
	body["data"] = data
	respondJSON(w, http.StatusOK, body)
}

func (s *Server) readMount(w http.ResponseWriter, p, reqID string) {
	s.mu.RLock()
	m, ok := s.mounts[p]
	s.mu.RUnlock()
	if !ok {
		logical.RespondError(w, http.StatusBadRequest, fmt.Errorf("No secret engine mount at %s", p)) //nolint:staticcheck // Vault's exact wording
		return
	}
	respondJSON(w, http.StatusOK, &logical.HTTPResponse{
		RequestID: reqID,
		Data:      mountOutput(p, m.entry.Type, m.entry.Description, m.entry.UUID, m.entry.Accessor),
		MountType: "system",
	})
}

func (s *Server) enableMount(ctx context.Context, w http.ResponseWriter, p string, data map[string]any) string {
	typ, _ := data["type"].(string)
	desc, _ := data["description"].(string)
	switch typ {
	case "transit":
	case "":
		logical.RespondError(w, http.StatusBadRequest, errors.New("backend type must be specified as a string"))
		return ""
	default:
		logical.RespondError(w, http.StatusBadRequest, fmt.Errorf("plugin not found in the catalog: %s", typ))
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for existing := range s.allMountPathsLocked() {
		if strings.HasPrefix(p, existing) || strings.HasPrefix(existing, p) {
			logical.RespondError(w, http.StatusBadRequest, fmt.Errorf("path is already in use at %s", existing))
			return ""
		}
	}
	id := newUUID()
	m, err := s.newMount(mountEntry{Path: p, Type: typ, Description: desc, UUID: id, Accessor: "transit_" + id[:8]})
	if err != nil {
		logical.RespondError(w, http.StatusInternalServerError, err)
		return err.Error()
	}
	s.mounts[p] = m
	if err := s.saveMountsLocked(ctx); err != nil {
		delete(s.mounts, p)
		logical.RespondError(w, http.StatusInternalServerError, err)
		return err.Error()
	}
	w.WriteHeader(http.StatusNoContent)
	return ""
}

func (s *Server) allMountPathsLocked() map[string]struct{} {
	out := map[string]struct{}{}
	for p := range builtinMounts {
		out[p] = struct{}{}
	}
	for p := range s.mounts {
		out[p] = struct{}{}
	}
	return out
}

// disableMount unmounts and deletes the engine's keys; like Vault it answers 204 even when
// nothing was mounted there.
func (s *Server) disableMount(ctx context.Context, w http.ResponseWriter, p string) string {
	if _, ok := builtinMounts[p]; ok {
		logical.RespondError(w, http.StatusBadRequest, fmt.Errorf("cannot unmount %q", p))
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.mounts[p]
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return ""
	}
	delete(s.mounts, p)
	if err := s.saveMountsLocked(ctx); err != nil {
		s.mounts[p] = m
		logical.RespondError(w, http.StatusInternalServerError, err)
		return err.Error()
	}
	if err := s.store.deletePrefix("logical/" + m.entry.UUID + "/"); err != nil {
		logical.RespondError(w, http.StatusInternalServerError, err)
		return err.Error()
	}
	w.WriteHeader(http.StatusNoContent)
	return ""
}

// newUUID returns a random RFC 4122 version 4 UUID (request ids, mount ids).
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
