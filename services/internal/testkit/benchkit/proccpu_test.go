package benchkit

import (
	"os"
	"strings"
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
	deadline := time.Now().Add(300 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ { // burn CPU
		_ = x * x
	}
	after, _ := ProcessCPU(strings.TrimSpace(string(comm)))
	if after-before < 100*time.Millisecond {
		t.Errorf("ProcessCPU grew by %v over 300ms of spinning, want at least 100ms", after-before)
	}
}
