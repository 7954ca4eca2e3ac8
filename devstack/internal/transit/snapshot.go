package transit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The key-store backup: the whole storage in one snapshot, served at Vault's integrated-storage
// paths (GET sys/storage/raft/snapshot, POST sys/storage/raft/snapshot and snapshot-force), so
// that the backup procedure and the client calls (api.Sys().RaftSnapshot, RaftSnapshotRestore)
// are the ones an operator uses against real Vault or OpenBao.
//
// The snapshot is shaped like Vault's: a gzip'd tar whose last file is SHA256SUMS.sealed (the
// vault api client refuses a snapshot without it, taking it for one cut off midstream). Its
// files, each exactly once and nothing else:
//
//	meta.json          {"format":"transitdev-snapshot","version":1,"server_version":…,"created":…,"entries":N}
//	state.json         the storage entries, as in the data dir's state file
//	SHA256SUMS         "<sha256 hex>  meta.json\n<sha256 hex>  state.json\n"
//	SHA256SUMS.sealed  hex HMAC-SHA256 of SHA256SUMS under the server's seal key
//
// A restore checks everything before it changes anything: gzip and tar framing to the end of
// the stream (a truncated snapshot fails its gzip checksum or length), SHA256SUMS against both
// files, the format and version, the entry count, and that the mount table decodes. Like
// Vault, the plain restore also checks SHA256SUMS.sealed against this server's seal key, so it
// only takes back a snapshot of the same key store (a rollback); snapshot-force skips that one
// check and is what restores into a fresh server, as it is for a fresh Vault cluster with other
// unseal keys. The seal key is a random key in the data dir, beside the state and never in it,
// as Vault's unseal keys are never in its storage. It only binds a snapshot to a key store: the
// snapshot itself is not encrypted (the dev server seals nothing; keep snapshots as secret as
// the data dir).

// Snapshot layout and limits.
const (
	snapshotFormat  = "transitdev-snapshot"
	snapshotVersion = 1

	snapMetaName   = "meta.json"
	snapStateName  = "state.json"
	snapSumsName   = "SHA256SUMS"
	snapSealedName = "SHA256SUMS.sealed"

	// maxSnapshotSize bounds a restore's request body (compressed); maxSnapshotContent bounds
	// what it may decompress to, so a small body cannot inflate into gigabytes. A dev key store
	// is kilobytes.
	maxSnapshotSize    = 64 << 20
	maxSnapshotContent = 256 << 20

	sealKeyFileName = "transit-dev-seal.key"
)

// errSealMismatch is the plain restore's answer to a snapshot of another key store; the
// wording follows Vault's.
var errSealMismatch = errors.New("could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the snapshot-force API to bypass this check")

// snapshotMeta is meta.json.
type snapshotMeta struct {
	Format        string    `json:"format"`
	Version       int       `json:"version"`
	ServerVersion string    `json:"server_version"`
	Created       time.Time `json:"created"`
	Entries       int       `json:"entries"`
}

// decodedSnapshot is a snapshot whose framing and checksums held.
type decodedSnapshot struct {
	meta    snapshotMeta
	entries map[string][]byte
	sums    []byte // SHA256SUMS as stored
	sealed  []byte // the HMAC SHA256SUMS.sealed holds, decoded from hex
}

// sealedBy reports whether the snapshot was taken by a server with sealKey.
func (d *decodedSnapshot) sealedBy(sealKey []byte) bool {
	return hmac.Equal(d.sealed, sealSums(sealKey, d.sums))
}

func sealSums(sealKey, sums []byte) []byte {
	m := hmac.New(sha256.New, sealKey)
	m.Write(sums)
	return m.Sum(nil)
}

// sumsFile is the SHA256SUMS text for the two content files, in sha256sum's format.
func sumsFile(meta, state []byte) []byte {
	m, s := sha256.Sum256(meta), sha256.Sum256(state)
	return fmt.Appendf(nil, "%x  %s\n%x  %s\n", m, snapMetaName, s, snapStateName)
}

// encodeSnapshot writes entries as a snapshot sealed under sealKey.
func encodeSnapshot(entries map[string][]byte, sealKey []byte, now time.Time) ([]byte, error) {
	if entries == nil {
		entries = map[string][]byte{}
	}
	meta, err := json.Marshal(snapshotMeta{Format: snapshotFormat, Version: snapshotVersion, ServerVersion: Version,
		Created: now.UTC(), Entries: len(entries)})
	if err != nil {
		return nil, err
	}
	state, err := json.Marshal(stateFile{Version: 1, Entries: entries})
	if err != nil {
		return nil, err
	}
	sums := sumsFile(meta, state)
	sealed := []byte(hex.EncodeToString(sealSums(sealKey, sums)))

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []struct {
		name string
		body []byte
	}{{snapMetaName, meta}, {snapStateName, state}, {snapSumsName, sums}, {snapSealedName, sealed}} {
		hdr := &tar.Header{Name: f.name, Mode: 0o600, Size: int64(len(f.body)), ModTime: now.UTC(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeSnapshot parses and verifies a snapshot (everything but the seal: see sealedBy). It is
// fed untrusted bytes (fuzzed by FuzzDecodeSnapshot): every error names what is wrong with the
// snapshot's structure, never its content.
func decodeSnapshot(raw []byte) (*decodedSnapshot, error) {
	if len(raw) == 0 {
		return nil, errors.New("empty snapshot")
	}
	br := bytes.NewReader(raw)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("not a gzip stream: %w", err)
	}
	// One gzip member, then nothing: bytes appended to a snapshot are damage too.
	zr.Multistream(false)
	content := &io.LimitedReader{R: zr, N: maxSnapshotContent + 1}
	files := map[string][]byte{}
	tr := tar.NewReader(content)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		switch hdr.Name {
		case snapMetaName, snapStateName, snapSumsName, snapSealedName:
		default:
			return nil, fmt.Errorf("unexpected file %q in the archive", truncateName(hdr.Name))
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("archive entry %s is not a regular file", hdr.Name)
		}
		if _, dup := files[hdr.Name]; dup {
			return nil, fmt.Errorf("archive holds %s twice", hdr.Name)
		}
		if hdr.Size < 0 || hdr.Size > maxSnapshotContent {
			return nil, fmt.Errorf("archive entry %s: size %d out of range", hdr.Name, hdr.Size)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", hdr.Name, err)
		}
		files[hdr.Name] = body
	}
	// Read to the end of the gzip member: only there does gzip check its CRC-32 and length, the
	// check that catches a snapshot cut off in the tar's trailing padding.
	if _, err := io.Copy(io.Discard, content); err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	if content.N <= 0 {
		return nil, fmt.Errorf("snapshot decompresses to more than %d bytes", maxSnapshotContent)
	}
	if br.Len() != 0 {
		return nil, fmt.Errorf("%d bytes of trailing data after the archive", br.Len())
	}
	for _, name := range []string{snapMetaName, snapStateName, snapSumsName, snapSealedName} {
		if _, ok := files[name]; !ok {
			return nil, fmt.Errorf("archive lacks %s", name)
		}
	}

	d := &decodedSnapshot{sums: files[snapSumsName]}
	if !bytes.Equal(d.sums, sumsFile(files[snapMetaName], files[snapStateName])) {
		return nil, fmt.Errorf("%s does not match the archive's content (damaged snapshot)", snapSumsName)
	}
	sealedHex := strings.TrimSpace(string(files[snapSealedName]))
	if d.sealed, err = hex.DecodeString(sealedHex); err != nil || len(d.sealed) != sha256.Size {
		return nil, fmt.Errorf("%s is not a hex SHA-256 HMAC", snapSealedName)
	}

	dec := json.NewDecoder(bytes.NewReader(files[snapMetaName]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d.meta); err != nil {
		return nil, fmt.Errorf("decode %s: %w", snapMetaName, err)
	}
	if d.meta.Format != snapshotFormat {
		return nil, fmt.Errorf("%s: format %q, want %q", snapMetaName, truncateName(d.meta.Format), snapshotFormat)
	}
	if d.meta.Version != snapshotVersion {
		return nil, fmt.Errorf("%s: unsupported snapshot version %d (this server reads version %d)", snapMetaName, d.meta.Version, snapshotVersion)
	}
	var st stateFile
	if err := json.Unmarshal(files[snapStateName], &st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", snapStateName, err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("%s: unsupported state version %d", snapStateName, st.Version)
	}
	if st.Entries == nil {
		st.Entries = map[string][]byte{}
	}
	if len(st.Entries) != d.meta.Entries {
		return nil, fmt.Errorf("%s holds %d entries, %s says %d", snapStateName, len(st.Entries), snapMetaName, d.meta.Entries)
	}
	for k, v := range st.Entries {
		if k == "" {
			return nil, fmt.Errorf("%s holds an entry with an empty key", snapStateName)
		}
		if v == nil {
			st.Entries[k] = []byte{}
		}
	}
	d.entries = st.Entries
	return d, nil
}

// truncateName keeps an untrusted name short in an error.
func truncateName(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}

// loadSealKey reads the seal key from dir, creating it on first use; without a data dir the
// key lives as long as the process (so does the storage it seals).
func loadSealKey(dir string) ([]byte, error) {
	newKey := func() []byte {
		k := make([]byte, 32)
		_, _ = rand.Read(k) // crypto/rand.Read never fails on supported platforms
		return k
	}
	if dir == "" {
		return newKey(), nil
	}
	path := filepath.Join(dir, sealKeyFileName)
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, derr := hex.DecodeString(strings.TrimSpace(string(raw)))
		if derr != nil || len(k) != 32 {
			return nil, fmt.Errorf("seal key file %s is damaged (want 64 hex digits)", path)
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read seal key: %w", err)
	}
	k := newKey()
	// O_EXCL: two servers started on one fresh dir must not each write their own key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create seal key: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		_ = f.Close() // the write already failed; that error is the one to report
		return nil, fmt.Errorf("write seal key: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync already failed; that error is the one to report
		return nil, fmt.Errorf("write seal key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write seal key: %w", err)
	}
	return k, nil
}
