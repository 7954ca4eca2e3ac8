package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStatusField(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\tmessaging\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t12\n")
	tests := []struct {
		name    string
		field   string
		want    int64
		wantErr bool
	}{
		{name: "peak", field: "VmHWM", want: 51200 * 1024},
		{name: "current", field: "VmRSS", want: 40960 * 1024},
		{name: "not in kB", field: "Threads", wantErr: true},
		{name: "missing", field: "VmSwap", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := statusField(status, tt.field)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("statusField(%s) = %d, %v; want %d, error %v", tt.field, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestMetricValue(t *testing.T) {
	t.Parallel()
	text := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 42\ngo_goroutines_extra 7\n"
	tests := []struct {
		name    string
		metric  string
		want    float64
		wantErr bool
	}{
		{name: "present", metric: "go_goroutines", want: 42},
		{name: "prefix of another", metric: "go_goroutines_extra", want: 7},
		{name: "absent", metric: "go_threads", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := metricValue(strings.NewReader(text), tt.metric)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("metricValue(%s) = %v, %v; want %v, error %v", tt.metric, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestStatStateGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		stat      string
		wantState byte
		wantGroup int
		wantOK    bool
	}{
		{name: "sleeping", stat: "123 (transitdev) S 1 120 120 0", wantState: 'S', wantGroup: 120, wantOK: true},
		{name: "zombie", stat: "123 (sleep) Z 1 99 99 0", wantState: 'Z', wantGroup: 99, wantOK: true},
		{name: "parenthesis and space in name", stat: "123 (a) b c) R 1 7 7", wantState: 'R', wantGroup: 7, wantOK: true},
		{name: "truncated", stat: "123 (x) S 1", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, group, ok := statStateGroup([]byte(tt.stat))
			if ok != tt.wantOK || (ok && (state != tt.wantState || group != tt.wantGroup)) {
				t.Errorf("statStateGroup(%q) = %c, %d, %v; want %c, %d, %v", tt.stat, state, group, ok, tt.wantState, tt.wantGroup, tt.wantOK)
			}
		})
	}
}

// TestProcessStopKillsGroup checks the process life cycle on a real child: ready detection,
// an early exit reported with the log, and that stop leaves no member of the group behind.
func TestProcessStopKillsGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The shell forks a grandchild that would outlive it without the group kill.
	p := &process{name: "sleeper", path: "/bin/sh", args: []string{"-c", "sleep 300 & echo started; wait"},
		env: os.Environ(), logPath: filepath.Join(dir, "sleeper.log"), stopSig: syscall.SIGTERM, stopWait: 5 * time.Second}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.kill() })
	err := p.waitReady(t.Context(), 10*time.Second, func(context.Context) error {
		data, _ := os.ReadFile(p.logPath)
		if !strings.Contains(string(data), "started") {
			return os.ErrNotExist
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waitReady() = %v", err)
	}
	pgid := p.pid()
	if err := p.stop(); err != nil {
		t.Fatalf("stop() = %v", err)
	}
	if groupAlive(pgid) {
		t.Errorf("groupAlive(%d) after stop = true, want false", pgid)
	}
	if p.running() {
		t.Errorf("running() after stop = true, want false")
	}

	failing := &process{name: "failing", path: "/bin/sh", args: []string{"-c", "echo boom; exit 3"},
		env: os.Environ(), logPath: filepath.Join(dir, "failing.log"), stopSig: syscall.SIGTERM, stopWait: time.Second}
	if err := failing.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = failing.kill() })
	err = failing.waitReady(t.Context(), 10*time.Second, func(context.Context) error { return os.ErrNotExist })
	if err == nil || !strings.Contains(err.Error(), "exited while starting") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("waitReady() on an exiting process = %v, want an error saying it exited, with its log", err)
	}
}

// TestDetachedProcessIsFoundAgain checks the dev stack's records: a detached process is found
// by a later run (another process value, as another `up` has), seen as changed when its
// settings differ, and stopped through its record, which then goes.
func TestDetachedProcessIsFoundAgain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newSleeper := func(args ...string) *process {
		p := newProcess("sleeper", filepath.Join(dir, "sleeper.log"), "/bin/sleep", args...)
		p.recordPath = filepath.Join(dir, "pid")
		return p
	}
	first := newSleeper("300")
	if err := first.start(); err != nil {
		t.Fatal(err)
	}
	pid := first.pid()
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })

	later := newSleeper("300")
	rec, ok := later.adopt()
	if !ok || later.pid() != pid {
		t.Fatalf("adopt() = %+v, %v; pid() = %d, want the running pid %d", rec, ok, later.pid(), pid)
	}
	if what := later.changed(rec); what != "" {
		t.Errorf("changed() with the same command line = %q, want \"\"", what)
	}
	if what := newSleeper("301").changed(rec); what != "settings" {
		t.Errorf("changed() with other arguments = %q, want settings", what)
	}
	if err := later.stop(); err != nil {
		t.Fatalf("stop() of the adopted process = %v", err)
	}
	if alive(pid) {
		t.Errorf("alive(%d) after stop = true, want false", pid)
	}
	if _, err := os.Stat(later.recordPath); !os.IsNotExist(err) {
		t.Errorf("record after stop: Stat = %v, want not exist", err)
	}
	if _, ok := newSleeper("300").adopt(); ok {
		t.Errorf("adopt() after stop = true, want false")
	}
}

// TestReadRecordGuardsPIDReuse checks that a record only stands for the process it was written
// for: a live pid with another start time is somebody else's, and the old script's "pid path"
// lines count only when the command line still names the path.
func TestReadRecordGuardsPIDReuse(t *testing.T) {
	t.Parallel()
	self := os.Getpid()
	ticks, ok := startTicks(self)
	if !ok {
		t.Fatal("startTicks(self) failed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body string
		want bool
	}{
		{name: "this process", body: fmt.Sprintf(`{"pid":%d,"start_ticks":%d}`, self, ticks), want: true},
		{name: "reused pid", body: fmt.Sprintf(`{"pid":%d,"start_ticks":%d}`, self, ticks+1), want: false},
		{name: "dead pid", body: `{"pid":999999999,"start_ticks":1}`, want: false},
		{name: "legacy line naming the binary", body: fmt.Sprintf("%d %s\n", self, exe), want: true},
		{name: "legacy line naming another binary", body: fmt.Sprintf("%d /usr/bin/not-this-one\n", self), want: false},
		{name: "garbage", body: "not a record", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pid")
			if err := os.WriteFile(path, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, got := readRecord(path); got != tt.want {
				t.Errorf("readRecord(%q) = %v, want %v", tt.body, got, tt.want)
			}
		})
	}
}

// TestDetachedComponentLeftAloneThenRestartedOnChange runs a detached NATS twice with the same
// settings (the second `up` leaves it alone) and once with other settings (restarted).
func TestDetachedComponentLeftAloneThenRestartedOnChange(t *testing.T) {
	t.Parallel()
	root := RepoRoot()
	if _, err := ToolPath(root, "nats-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	cfg, err := PrivateConfig(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Detached = true
	cfg.Without = []string{"postgres", "vault", "minio", "clamd", "mailpit"}
	bring := func(cfg Config) (string, int) {
		t.Helper()
		c := New(cfg).NATS
		how, err := c.bring(t.Context(), t.Logf)
		if err != nil {
			t.Fatalf("bring() = %v", err)
		}
		return how, c.PID()
	}
	t.Cleanup(func() {
		if _, err := New(cfg).Down(); err != nil {
			t.Error(err)
		}
	})
	how, pid := bring(cfg)
	if how != "started" || pid == 0 {
		t.Fatalf("first bring() = %q, pid %d; want started", how, pid)
	}
	if how, again := bring(cfg); how != "running" || again != pid {
		t.Errorf("second bring() = %q, pid %d; want running, pid %d", how, again, pid)
	}
	changed := cfg
	changed.NATSMaxStore = 1 << 30
	if how, restarted := bring(changed); how != "started" || restarted == pid || restarted == 0 {
		t.Errorf("bring() with other settings = %q, pid %d; want started with a new pid (old %d)", how, restarted, pid)
	}
	if alive(pid) {
		t.Errorf("alive(old pid %d) after the restart = true, want false", pid)
	}
}
