package privstack

import (
	"context"
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
