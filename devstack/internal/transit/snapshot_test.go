package transit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// snapServer is an in-process server over its own data dir, reached through the vault api
// client as the drill and an operator reach Vault.
type snapServer struct {
	srv *Server
	c   *vault.Client
	url string
	dir string
}

func startSnapServer(t *testing.T, dir string) *snapServer {
	t.Helper()
	srv, err := New(Config{RootToken: "root", DataDir: dir})
	if err != nil {
		t.Fatalf("New(%s) error = %v", dir, err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &snapServer{srv: srv, c: newClient(t, ts.URL, "root"), url: ts.URL, dir: dir}
}

// take is the operator's `vault operator raft snapshot save`: the client's RaftSnapshot, which
// itself refuses a body without a non-empty SHA256SUMS.sealed.
func (s *snapServer) take(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.c.Sys().RaftSnapshotWithContext(t.Context(), &buf); err != nil {
		t.Fatalf("Sys().RaftSnapshot() error = %v", err)
	}
	return buf.Bytes()
}

// keyState is what a restore must keep of a key ring: its versions and version bounds.
func keyState(t *testing.T, c *vault.Client, mnt, name string) map[string]any {
	t.Helper()
	s := readKey(t, c, mnt, name)
	out := map[string]any{"versions": keyVersions(t, s)}
	for _, f := range []string{"latest_version", "min_decryption_version", "min_encryption_version", "deletion_allowed", "type", "derived"} {
		out[f] = s.Data[f]
	}
	return out
}

// TestSnapshotRoundTrip takes a snapshot through the vault api client, restores it into a fresh
// server (snapshot-force, as into a fresh Vault cluster) and checks that everything old still
// works there: ciphertexts of every version, a wrapped data key, rotation and
// min_decryption_version, a second mount; that the restored state is on disk (a restart keeps
// it); and that the plain restore refuses a snapshot of another key store but takes back this
// server's own (a rollback).
func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	old := startSnapServer(t, t.TempDir())
	c := old.c
	for _, mnt := range []string{"transit", "kms"} {
		if err := c.Sys().MountWithContext(t.Context(), mnt, &vault.MountInput{Type: "transit"}); err != nil {
			t.Fatalf("Sys().Mount(%s) error = %v", mnt, err)
		}
	}
	pt := b64([]byte("snapshot round trip"))
	write(t, c, "transit/keys/dek", nil)
	ctV1 := encrypt(t, c, "transit", "dek", pt)
	dk := write(t, c, "transit/datakey/plaintext/dek", nil)
	dkPlain, dkWrapped := dk.Data["plaintext"].(string), dk.Data["ciphertext"].(string)
	write(t, c, "transit/keys/dek/rotate", nil)
	ctV2 := encrypt(t, c, "transit", "dek", pt)
	// A key whose first version is retired: the restore must keep the bound, not just the keys.
	write(t, c, "transit/keys/retired", map[string]any{"type": "chacha20-poly1305"})
	retiredV1 := encrypt(t, c, "transit", "retired", pt)
	write(t, c, "transit/keys/retired/rotate", nil)
	write(t, c, "transit/keys/retired/rotate", nil)
	retiredV3 := encrypt(t, c, "transit", "retired", pt)
	write(t, c, "transit/keys/retired/config", map[string]any{"min_decryption_version": 2, "deletion_allowed": true})
	ctKMS := encrypt(t, c, "kms", "other", pt)
	want := map[string]map[string]any{
		"transit/dek":     keyState(t, c, "transit", "dek"),
		"transit/retired": keyState(t, c, "transit", "retired"),
		"kms/other":       keyState(t, c, "kms", "other"),
	}
	snap := old.take(t)

	freshDir := t.TempDir()
	fresh := startSnapServer(t, freshDir)
	if err := fresh.c.Sys().MountWithContext(t.Context(), "transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	// Before the restore the fresh key store cannot unwrap anything old: the restore is needed.
	_, err := fresh.c.Logical().WriteWithContext(t.Context(), "transit/decrypt/dek", map[string]any{"ciphertext": dkWrapped})
	wantStatus(t, err, http.StatusBadRequest, "encryption key not found")

	// The plain restore checks the seal: a fresh server's seal key is not the old one's.
	err = fresh.c.Sys().RaftSnapshotRestoreWithContext(t.Context(), bytes.NewReader(snap), false)
	wantStatus(t, err, http.StatusBadRequest, "use the snapshot-force API")
	if err := fresh.c.Sys().RaftSnapshotRestoreWithContext(t.Context(), bytes.NewReader(snap), true); err != nil {
		t.Fatalf("Sys().RaftSnapshotRestore(force) error = %v", err)
	}

	check := func(t *testing.T, c *vault.Client) {
		t.Helper()
		for _, tc := range []struct{ mnt, key, ct, want string }{
			{"transit", "dek", ctV1, pt},
			{"transit", "dek", ctV2, pt},
			{"transit", "dek", dkWrapped, dkPlain},
			{"transit", "retired", retiredV3, pt},
			{"kms", "other", ctKMS, pt},
		} {
			if got := decrypt(t, c, tc.mnt, tc.key, tc.ct); got != tc.want {
				t.Errorf("decrypt(%s/%s, a %s ciphertext) after restore differs", tc.mnt, tc.key, tc.ct[:len("vault:v1")])
			}
		}
		_, err := c.Logical().WriteWithContext(t.Context(), "transit/decrypt/retired", map[string]any{"ciphertext": retiredV1})
		wantStatus(t, err, http.StatusBadRequest, "disallowed by policy (too old)")
		for k, w := range want {
			mnt, name, _ := strings.Cut(k, "/")
			if got := keyState(t, c, mnt, name); !equalJSON(t, got, w) {
				t.Errorf("key %s after restore = %v, want %v", k, got, w)
			}
		}
		mounts, err := c.Sys().ListMountsWithContext(t.Context())
		if err != nil || mounts["transit/"] == nil || mounts["kms/"] == nil {
			t.Errorf("Sys().ListMounts() after restore = %v, %v; want transit/ and kms/", slices.Sorted(maps.Keys(mounts)), err)
		}
		// The restored key rings are live, not read-only: they rotate and encrypt.
		write(t, c, "transit/keys/dek/rotate", nil)
		if got := decrypt(t, c, "transit", "dek", encrypt(t, c, "transit", "dek", pt)); got != pt {
			t.Errorf("encrypt/decrypt with the restored key after a rotation differs")
		}
	}
	t.Run("restored", func(t *testing.T) { check(t, fresh.c) })

	// The restore is persisted: a server started again on the fresh dir has it. (The rotation
	// check made v3 of dek; the restart must keep that too.)
	want["transit/dek"] = keyState(t, fresh.c, "transit", "dek")
	restarted := startSnapServer(t, freshDir)
	t.Run("after restart", func(t *testing.T) { check(t, restarted.c) })

	// The plain restore takes back a snapshot of the same key store: delete a key on the old
	// server, then roll back.
	if _, err := c.Logical().DeleteWithContext(t.Context(), "transit/keys/retired"); err != nil {
		t.Fatalf("delete transit/keys/retired: %v", err)
	}
	if s := readKeyOrNil(t, c, "transit", "retired"); s != nil {
		t.Fatalf("transit/keys/retired still there after delete")
	}
	if err := c.Sys().RaftSnapshotRestoreWithContext(t.Context(), bytes.NewReader(snap), false); err != nil {
		t.Fatalf("Sys().RaftSnapshotRestore(same server, no force) error = %v", err)
	}
	if got := decrypt(t, c, "transit", "retired", retiredV3); got != pt {
		t.Errorf("decrypt with the rolled-back key differs")
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	return bytes.Equal(mustJSON(t, a), mustJSON(t, b))
}

// snapFile is one tar entry of a hand-built snapshot.
type snapFile struct {
	name string
	body []byte
	typ  byte
}

// buildSnapshot packs files as a snapshot is packed, so a test can damage one part and keep
// the rest well-formed.
func buildSnapshot(t testing.TB, files []snapFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: f.name, Mode: 0o600, Typeflag: typ, ModTime: time.Unix(0, 0)}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(f.body))
		} else {
			hdr.Linkname = "meta.json"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil && typ == tar.TypeReg {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// snapshotParts unpacks a valid snapshot into its files, for tests that damage one of them.
func snapshotParts(t testing.TB, raw []byte) []snapFile {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []snapFile
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, snapFile{name: hdr.Name, body: body})
	}
}

// resealed rebuilds a snapshot around changed meta and state files with consistent sums and a
// seal under sealKey: damage only the checks past the checksums can find.
func resealed(t testing.TB, meta, state, sealKey []byte) []byte {
	t.Helper()
	sums := sumsFile(meta, state)
	return buildSnapshot(t, []snapFile{
		{name: snapMetaName, body: meta}, {name: snapStateName, body: state}, {name: snapSumsName, body: sums},
		{name: snapSealedName, body: []byte(hex.EncodeToString(sealSums(sealKey, sums)))},
	})
}

// TestSnapshotRefusesDamage sends damaged, truncated and malformed snapshots to both restore
// endpoints: each is refused with a 400 whose Vault-shaped errors say why, and the server's
// storage and keys are exactly as before.
func TestSnapshotRefusesDamage(t *testing.T) {
	t.Parallel()
	s := startSnapServer(t, t.TempDir())
	if err := s.c.Sys().MountWithContext(t.Context(), "transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	pt := b64([]byte("must survive a refused restore"))
	ct := encrypt(t, s.c, "transit", "k", pt)
	good := s.take(t)
	parts := snapshotParts(t, good)
	meta, state := parts[0].body, parts[1].body
	if parts[0].name != snapMetaName || parts[1].name != snapStateName || len(parts) != 4 || parts[3].name != snapSealedName {
		t.Fatalf("snapshot files = %v, want meta.json, state.json, SHA256SUMS, SHA256SUMS.sealed", parts)
	}
	// A different key store, so a restore of the damaged snapshots would visibly change things.
	other := startSnapServer(t, t.TempDir())
	if err := other.c.Sys().MountWithContext(t.Context(), "elsewhere", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	otherSnap := other.take(t)
	otherParts := snapshotParts(t, otherSnap)
	otherMeta, otherState := otherParts[0].body, otherParts[1].body

	flip := func(b []byte, i int) []byte {
		out := bytes.Clone(b)
		out[i] ^= 0x01
		return out
	}
	with := func(name string, body []byte) []byte {
		files := slices.Clone(otherParts)
		for i := range files {
			if files[i].name == name {
				files[i].body = body
			}
		}
		return buildSnapshot(t, files)
	}
	stateWith := func(entries map[string][]byte) []byte {
		return mustJSON(t, stateFile{Version: 1, Entries: entries})
	}
	metaWith := func(f func(*snapshotMeta)) []byte {
		var m snapshotMeta
		if err := json.Unmarshal(otherMeta, &m); err != nil {
			t.Fatal(err)
		}
		f(&m)
		return mustJSON(t, m)
	}
	var otherEntries stateFile
	if err := json.Unmarshal(otherState, &otherEntries); err != nil {
		t.Fatal(err)
	}
	badMounts := maps.Clone(otherEntries.Entries)
	badMounts[mountsKey] = []byte(`[{"path":"kv/","type":"kv","uuid":"u"}]`)

	for _, tc := range []struct {
		name string
		body []byte
		msg  string
	}{
		{"empty", nil, "empty snapshot"},
		{"not gzip", []byte("PK\x03\x04 this is a zip, not a snapshot"), "not a gzip stream"},
		{"gzip of garbage", gzipBytes(t, []byte("no tar here")), "read archive"},
		{"truncated to half", otherSnap[:len(otherSnap)/2], ""},
		{"last 8 bytes cut (gzip trailer)", otherSnap[:len(otherSnap)-8], ""},
		{"one byte cut", otherSnap[:len(otherSnap)-1], ""},
		{"bit flipped in the middle", flip(otherSnap, len(otherSnap)/2), ""},
		{"bit flipped in the gzip CRC", flip(otherSnap, len(otherSnap)-6), "checksum"},
		{"trailing data", append(bytes.Clone(otherSnap), 0x1f, 0x8b), "trailing data"},
		{"state changed, sums not", with(snapStateName, flip(otherState, len(otherState)/2)), "SHA256SUMS does not match"},
		{"sums changed", with(snapSumsName, flip(otherParts[2].body, 3)), "SHA256SUMS does not match"},
		{"sealed file empty", with(snapSealedName, nil), "SHA256SUMS.sealed is not a hex"},
		{"sealed file missing", buildSnapshot(t, otherParts[:3]), "lacks SHA256SUMS.sealed"},
		{"state missing", buildSnapshot(t, []snapFile{otherParts[0], otherParts[2], otherParts[3]}), "lacks state.json"},
		{"file twice", buildSnapshot(t, append(slices.Clone(otherParts), otherParts[1])), "state.json twice"},
		{"extra file", buildSnapshot(t, append(slices.Clone(otherParts), snapFile{name: "../../etc/passwd", body: []byte("x")})), "unexpected file"},
		{"symlink", buildSnapshot(t, []snapFile{otherParts[0], {name: snapStateName, typ: tar.TypeSymlink}, otherParts[2], otherParts[3]}), "not a regular file"},
		{"wrong format", resealed(t, metaWith(func(m *snapshotMeta) { m.Format = "vault-raft" }), otherState, s.srv.sealKey), "format"},
		{"future version", resealed(t, metaWith(func(m *snapshotMeta) { m.Version = 2 }), otherState, s.srv.sealKey), "unsupported snapshot version 2"},
		{"entry count wrong", resealed(t, metaWith(func(m *snapshotMeta) { m.Entries++ }), otherState, s.srv.sealKey), "entries"},
		{"state not JSON", resealed(t, otherMeta, []byte("{"), s.srv.sealKey), "decode state.json"},
		{"empty entry key", resealed(t, metaWith(func(m *snapshotMeta) { m.Entries = 1 }), stateWith(map[string][]byte{"": []byte("x")}), s.srv.sealKey), "empty key"},
		{"bad mount table", resealed(t, otherMeta, stateWith(badMounts), s.srv.sealKey), "mount of type"},
	} {
		for _, force := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "", true: "/force"}[force], func(t *testing.T) {
				before := s.srv.store.copyEntries()
				err := s.c.Sys().RaftSnapshotRestoreWithContext(t.Context(), bytes.NewReader(tc.body), force)
				wantStatus(t, err, http.StatusBadRequest, tc.msg)
				wantStatus(t, err, http.StatusBadRequest, "snapshot refused")
				if after := s.srv.store.copyEntries(); !maps.EqualFunc(before, after, bytes.Equal) {
					t.Errorf("storage changed by a refused restore")
				}
				if got := decrypt(t, s.c, "transit", "k", ct); got != pt {
					t.Errorf("decrypt after a refused restore differs")
				}
			})
		}
	}

	// The checks above are not vacuous: the untouched snapshot of the other store restores.
	if err := s.c.Sys().RaftSnapshotRestoreWithContext(t.Context(), bytes.NewReader(otherSnap), true); err != nil {
		t.Fatalf("restore of the undamaged snapshot error = %v", err)
	}
	mounts, err := s.c.Sys().ListMountsWithContext(t.Context())
	if err != nil || mounts["elsewhere/"] == nil || mounts["transit/"] != nil {
		t.Fatalf("mounts after restoring the other store = %v, %v; want elsewhere/ and no transit/", slices.Sorted(maps.Keys(mounts)), err)
	}
	// And its own snapshot, resealed by hand with the right key, restores without force.
	if err := s.c.Sys().RaftSnapshotRestoreWithContext(t.Context(), bytes.NewReader(resealed(t, meta, state, s.srv.sealKey)), false); err != nil {
		t.Fatalf("restore of the server's own snapshot error = %v", err)
	}
	if got := decrypt(t, s.c, "transit", "k", ct); got != pt {
		t.Errorf("decrypt after restoring the server's own snapshot differs")
	}
}

// TestSnapshotAPI covers the endpoints' HTTP edges: the root token is needed for both, other
// methods and paths are Vault's 405 and 404, and an oversized body is 413.
func TestSnapshotAPI(t *testing.T) {
	t.Parallel()
	s := startSnapServer(t, "")
	do := func(method, path, token string, body io.Reader) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), method, s.url+"/v1/sys/storage/raft/"+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("X-Vault-Token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	for _, tc := range []struct {
		method, path, token string
		body                io.Reader
		code                int
		msg                 string
	}{
		{http.MethodGet, "snapshot", "", nil, 403, "permission denied"},
		{http.MethodGet, "snapshot", "wrong", nil, 403, "permission denied"},
		{http.MethodPost, "snapshot-force", "", strings.NewReader("x"), 403, "permission denied"},
		{http.MethodPost, "snapshot", "wrong", strings.NewReader("x"), 403, "permission denied"},
		{http.MethodDelete, "snapshot", "root", nil, 405, "unsupported operation"},
		{http.MethodGet, "snapshot-force", "root", nil, 405, "unsupported operation"},
		{http.MethodGet, "configuration", "root", nil, 404, "unsupported path"},
		{http.MethodPost, "snapshot-force", "root", io.LimitReader(zeros{}, maxSnapshotSize+1), 413, "larger than"},
	} {
		code, body := do(tc.method, tc.path, tc.token, tc.body)
		if code != tc.code || !strings.Contains(body, `"errors":[`) || !strings.Contains(body, tc.msg) {
			t.Errorf("%s %s (token %q) = %d %s; want %d with errors containing %q", tc.method, tc.path, tc.token, code, body, tc.code, tc.msg)
		}
	}
	if code, body := do(http.MethodGet, "snapshot", "root", nil); code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("GET snapshot = %d, %d bytes; want 200 with a gzip body", code, len(body))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
