package benchkit

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStatTicks(t *testing.T) {
	line := "4242 (postgres: a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 3 2 20 0 1 0 100 0 0"
	if got := statTicks(line, "postgres: a) b"); got != 17 {
		t.Errorf("statTicks = %d, want 7+5+3+2 = 17", got)
	}
	if got := statTicks(line, "postgres"); got != 0 {
		t.Errorf("statTicks(other command) = %d, want 0", got)
	}
	if got := statTicks("1 (x) S 1", "x"); got != 0 {
		t.Errorf("statTicks(short line) = %d, want 0", got)
	}
}

func TestProcessCPUSeesThisProcess(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc on this system")
	}
	before, ok := ProcessCPU(strings.TrimSpace(string(comm)))
	if !ok {
		t.Fatal("ProcessCPU could not read /proc")
	}
	// Spin until the kernel has charged this process 300ms of CPU (by its own account,
	// getrusage), however long that takes on a busy machine: a fixed wall-clock spin measures
	// the machine's load, not ProcessCPU.
	start := selfCPU(t)
	for x, deadline := 0, time.Now().Add(30*time.Second); selfCPU(t)-start < 300*time.Millisecond; x++ {
		if time.Now().After(deadline) {
			t.Fatal("could not spend 300ms of CPU in 30s")
		}
		_ = x * x
	}
	after, _ := ProcessCPU(strings.TrimSpace(string(comm)))
	// Clock ticks are 10ms; the other processes of the same name only add.
	if after-before < 250*time.Millisecond {
		t.Errorf("ProcessCPU grew by %v while this process spent 300ms of CPU, want at least 250ms", after-before)
	}
}

// selfCPU is the user and system CPU time the kernel has charged this process.
func selfCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
