package transit

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/securemsg/securemsg/devstack/internal/devca"
)

// TestSuiteInProcess runs the suite against the server in this process on a random port.
func TestSuiteInProcess(t *testing.T) {
	t.Parallel()
	const token = "in-process-token"
	srv, err := New(Config{RootToken: token})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	RunSuite(t, ts.URL, token)
}

// TestSuiteProcessRestart runs the suite against the transitdev command, then checks that a
// restarted process with the same -data-dir still has its mount and keys: wrapped keys unwrap,
// old versions stay usable, rotation state is kept. It also checks the log never carries
// plaintext or ciphertext.
func TestSuiteProcessRestart(t *testing.T) {
	t.Parallel()
	bin := transitdevBinary(t)
	dataDir := t.TempDir()
	const token = "process-token"
	args := []string{"-addr", "127.0.0.1:0", "-root-token", token, "-data-dir", dataDir}

	first := startProcess(t, bin, args...)
	// In a subtest so the suite's cleanup (unmount) runs while the process is still up.
	t.Run("Suite", func(t *testing.T) { RunSuite(t, first.addr, token) })

	c := newClient(t, first.addr, token)
	if err := c.Sys().MountWithContext(t.Context(), "transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("Sys().Mount(transit) error = %v", err)
	}
	const marker = "restart-marker-plaintext"
	pt := b64([]byte(marker))
	write(t, c, "transit/keys/persist", nil)
	ctV1 := encrypt(t, c, "transit", "persist", pt)
	dk := write(t, c, "transit/datakey/plaintext/persist", nil)
	dkPlain, dkWrapped := dk.Data["plaintext"].(string), dk.Data["ciphertext"].(string)
	write(t, c, "transit/keys/persist/rotate", nil)
	ctV2 := encrypt(t, c, "transit", "persist", pt)
	first.stop(t)

	second := startProcess(t, bin, args...)
	c = newClient(t, second.addr, token)
	mounts, err := c.Sys().ListMountsWithContext(t.Context())
	if err != nil || mounts["transit/"] == nil {
		t.Fatalf("after restart Sys().ListMounts() = %v, %v; want transit/", mounts, err)
	}
	wantData(t, readKey(t, c, "transit", "persist"), map[string]any{"latest_version": 2})
	for _, tc := range []struct{ name, ct, want string }{
		{"v1 ciphertext", ctV1, pt},
		{"v2 ciphertext", ctV2, pt},
		{"wrapped datakey", dkWrapped, dkPlain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decrypt(t, c, "transit", "persist", tc.ct); got != tc.want {
				t.Errorf("after restart decrypt(%s) differs from before", tc.name)
			}
		})
	}
	if ct := encrypt(t, c, "transit", "persist", pt); !strings.HasPrefix(ct, "vault:v2:") {
		t.Errorf("after restart encrypt uses %.9s, want vault:v2:", ct)
	}
	second.stop(t)

	for _, p := range []*process{first, second} {
		logs := p.logs()
		for _, secret := range []string{marker, pt, ctV1, ctV2, dkPlain, dkWrapped, "vault:v"} {
			if strings.Contains(logs, secret) {
				t.Errorf("process log contains plaintext, key or ciphertext material (%.12s...)", secret)
			}
		}
	}
	info, err := os.Stat(filepath.Join(dataDir, stateFileName))
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("state file mode = %v, want 0600", perm)
	}
}

// TestProcessTLSAndFlags checks -tls-cert/-tls-key serve HTTPS and that bad flags are refused.
func TestProcessTLSAndFlags(t *testing.T) {
	t.Parallel()
	bin := transitdevBinary(t)

	t.Run("TLS", func(t *testing.T) {
		// The dev CA's messaging certificate names 127.0.0.1, where the process listens.
		certs := t.TempDir()
		if _, err := devca.Ensure(certs, time.Now()); err != nil {
			t.Fatalf("devca.Ensure() error = %v", err)
		}
		certFile, keyFile := filepath.Join(certs, "messaging.pem"), filepath.Join(certs, "messaging-key.pem")
		p := startProcess(t, bin, "-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
		if !strings.HasPrefix(p.addr, "https://") {
			t.Fatalf("listening address = %q, want https://", p.addr)
		}
		cfg := vault.DefaultConfig()
		cfg.Address = p.addr
		if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: filepath.Join(certs, devca.CACertFile)}); err != nil {
			t.Fatal(err)
		}
		c, err := vault.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken("root") // the default -root-token
		if err := c.Sys().MountWithContext(t.Context(), "transit", &vault.MountInput{Type: "transit"}); err != nil {
			t.Fatalf("Sys().Mount over TLS error = %v", err)
		}
		pt := b64([]byte("over tls"))
		if got := decrypt(t, c, "transit", "k", encrypt(t, c, "transit", "k", pt)); got != pt {
			t.Errorf("round trip over TLS differs")
		}
		p.stop(t)
	})

	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"non-loopback", []string{"-addr", "0.0.0.0:0"}, "not loopback"},
		{"cert without key", []string{"-addr", "127.0.0.1:0", "-tls-cert", "x.pem"}, "go together"},
		{"bad address", []string{"-addr", "nonsense"}, "-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), bin, tc.args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.msg) {
				t.Errorf("transitdev %v = %v, %q; want failure mentioning %q", tc.args, err, out, tc.msg)
			}
		})
	}
}

// TestSuiteRealVault runs the same suite against `vault server -dev` when a vault binary is on
// PATH, which keeps the suite honest about what Vault really does.
func TestSuiteRealVault(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("vault")
	if err != nil {
		// Real Vault cannot be installed on the build machines, so this is a skip even in CI.
		t.Skip("no vault binary on PATH (cannot be installed here): suite ran against the dev server only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // only the port was wanted
	const token = "real-vault-token"
	cmd := exec.Command(bin, "server", "-dev", "-dev-root-token-id="+token, "-dev-listen-address="+addr)
	cmd.Env = append(os.Environ(), "VAULT_ADDR=", "VAULT_TOKEN=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vault: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	c := newClient(t, "http://"+addr, token)
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if h, err := c.Sys().HealthWithContext(t.Context()); err == nil && h.Initialized && !h.Sealed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault server -dev not healthy within 30s; output:\n%s", out.String())
		}
		<-tick.C
	}
	RunSuite(t, "http://"+addr, token)
}

// TestSuiteStackVault runs the suite against whatever the dev stack serves as Vault
// (SECUREMSG_TEST_VAULT_ADDR, default http://127.0.0.1:8200: real Vault or transitdev). Like
// testkit.Unavailable (which this module cannot import), a missing stack skips locally and fails
// under CI=true.
func TestSuiteStackVault(t *testing.T) {
	t.Parallel()
	addr := cmp.Or(os.Getenv("SECUREMSG_TEST_VAULT_ADDR"), "http://127.0.0.1:8200")
	token := cmp.Or(os.Getenv("SECUREMSG_TEST_VAULT_TOKEN"), "root")
	if _, err := newClient(t, addr, token).Sys().HealthWithContext(t.Context()); err != nil {
		if ci := strings.ToLower(os.Getenv("CI")); ci == "true" || ci == "1" {
			t.Fatalf("dev stack Vault at %s is not available (CI=true, so this fails instead of skipping): %v", addr, err)
		}
		t.Skipf("dev stack Vault at %s is not available (run `make up`): %v", addr, err)
	}
	RunSuite(t, addr, token)
}

// TestDefaultTransitMount covers the transit/ mount itself and mount-table edge cases.
func TestDefaultTransitMount(t *testing.T) {
	t.Parallel()
	srv, err := New(Config{RootToken: "root"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	c := newClient(t, ts.URL, "root")

	_, err = c.Logical().WriteWithContext(t.Context(), "transit/encrypt/k", map[string]any{"plaintext": ""})
	wantStatus(t, err, 404, "no handler for route")
	if err := c.Sys().MountWithContext(t.Context(), "transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("Sys().Mount(transit) error = %v", err)
	}
	for _, tc := range []struct {
		name, path, typ, msg string
	}{
		{"again", "transit", "transit", "path is already in use at transit/"},
		{"nested", "transit/inner", "transit", "path is already in use at transit/"},
		{"builtin", "sys", "transit", "path is already in use at sys/"},
		{"other engine", "kv", "kv", "plugin not found in the catalog: kv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Sys().MountWithContext(t.Context(), tc.path, &vault.MountInput{Type: tc.typ})
			wantStatus(t, err, 400, tc.msg)
		})
	}
	pt := b64([]byte("x"))
	ct := encrypt(t, c, "transit", "k", pt)
	if err := c.Sys().UnmountWithContext(t.Context(), "transit"); err != nil {
		t.Fatalf("Sys().Unmount(transit) error = %v", err)
	}
	// Re-mounting gives an empty engine: unmounting destroyed the keys, as in Vault.
	if err := c.Sys().MountWithContext(t.Context(), "transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("Sys().Mount(transit) again error = %v", err)
	}
	_, err = c.Logical().WriteWithContext(t.Context(), "transit/decrypt/k", map[string]any{"ciphertext": ct})
	wantStatus(t, err, 400, "encryption key not found")
	if s, err := c.Logical().ListWithContext(t.Context(), "transit/keys"); err != nil || s != nil {
		t.Errorf("List(transit/keys) on an empty engine = %v, %v; want nil, nil (404)", s, err)
	}
}

// TestRestartInProcess checks persistence without a subprocess: a second Server over the same
// data directory decrypts what the first encrypted.
func TestRestartInProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pt := b64([]byte("persisted"))
	var ct string
	for i := range 2 {
		srv, err := New(Config{RootToken: "root", DataDir: dir})
		if err != nil {
			t.Fatalf("New(run %d) error = %v", i, err)
		}
		ts := httptest.NewServer(srv)
		c := newClient(t, ts.URL, "root")
		if i == 0 {
			if err := c.Sys().MountWithContext(t.Context(), "kms", &vault.MountInput{Type: "transit"}); err != nil {
				t.Fatal(err)
			}
			ct = encrypt(t, c, "kms", "k", pt)
		} else if got := decrypt(t, c, "kms", "k", ct); got != pt {
			t.Errorf("decrypt after restart differs")
		}
		ts.Close()
	}
}

// TestNewRejects covers constructor errors.
func TestNewRejects(t *testing.T) {
	t.Parallel()
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, stateFileName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"empty token", Config{}},
		{"corrupt state", Config{RootToken: "root", DataDir: corrupt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Errorf("New(%s) error = nil, want an error", tc.name)
			}
		})
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildOut  []byte
)

// transitdevBinary builds the command once per test binary (or uses
// SECUREMSG_TEST_TRANSITDEV_BIN).
func transitdevBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("SECUREMSG_TEST_TRANSITDEV_BIN"); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "transitdev-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "transitdev")
		cmd := exec.Command("go", "build", "-o", builtBin, "github.com/securemsg/securemsg/devstack/cmd/transitdev")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build transitdev: %v\n%s", buildErr, buildOut)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		_ = os.RemoveAll(filepath.Dir(builtBin)) // a temp folder; nothing to do if it stays
	}
	os.Exit(code)
}

// process is a running transitdev.
type process struct {
	cmd  *exec.Cmd
	addr string
	done chan error

	mu  sync.Mutex
	log bytes.Buffer
}

func (p *process) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startProcess runs bin and waits for its "listening" log line, which carries the bound address.
func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		err := p.cmd.Wait()
		_ = pw.Close() // ends the reader goroutine; the process already exited
		p.done <- err
	}()
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.Write(sc.Bytes())
			p.log.WriteByte('\n')
			p.mu.Unlock()
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				select {
				case addrc <- line.Addr:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	select {
	case p.addr = <-addrc:
	case err := <-p.done:
		t.Fatalf("transitdev exited before listening: %v\n%s", err, p.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("transitdev did not report listening within 30s\n%s", p.logs())
	}
	return p
}

// stop sends SIGTERM and expects a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal transitdev: %v", err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("transitdev exit = %v, want 0\n%s", err, p.logs())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("transitdev did not stop within 15s")
	}
}
