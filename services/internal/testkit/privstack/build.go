package privstack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/securemsg/securemsg/services/internal/testkit"
)

// unavailableError marks a dependency the machine lacks (a binary that is not installed and
// cannot be): the test ends through testkit.Unavailable rather than failing outright.
type unavailableError struct {
	component string
	err       error
}

func (e *unavailableError) Error() string { return e.component + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// builds holds the binaries this test binary built: each package is built at most once, the
// first time a Stack needs it, into one folder per test-binary process.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]string // package ("./devstack/cmd/oidcdev") -> binary
	errs map[string]error
}

// buildBinaries returns the binaries of the given packages (paths relative to the repo root),
// building those not built yet in a single `go build` (one invocation compiles in parallel and
// links once per binary; several concurrent ones would fight over the two cores).
func buildBinaries(pkgs ...string) (map[string]string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.bins == nil {
		builds.bins, builds.errs = map[string]string{}, map[string]error{}
	}
	var todo []string
	for _, pkg := range pkgs {
		if err := builds.errs[pkg]; err != nil {
			return nil, err
		}
		if _, ok := builds.bins[pkg]; !ok {
			todo = append(todo, pkg)
		}
	}
	if len(todo) > 0 {
		if err := buildNow(todo); err != nil {
			for _, pkg := range todo {
				builds.errs[pkg] = err
			}
			return nil, err
		}
	}
	out := make(map[string]string, len(pkgs))
	for _, pkg := range pkgs {
		out[pkg] = builds.bins[pkg]
	}
	return out, nil
}

func buildNow(pkgs []string) error {
	if builds.dir == "" {
		removeStaleBuildDirs()
		dir := filepath.Join(os.TempDir(), buildDirPrefix+strconv.Itoa(os.Getpid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("privstack: build folder: %w", err)
		}
		builds.dir = dir
	}
	cmd := exec.Command("go", append([]string{"build", "-o", builds.dir + "/"}, pkgs...)...)
	cmd.Dir = testkit.RepoRoot()
	// Through go.work whatever the caller's GOWORK says: the packages live in several modules.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOWORK=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("privstack: go build %s: %v\n%s", strings.Join(pkgs, " "), err, out.String())
	}
	for _, pkg := range pkgs {
		builds.bins[pkg] = filepath.Join(builds.dir, path.Base(pkg))
	}
	return nil
}

// buildDirPrefix names the per-process build folders in os.TempDir(). Nothing removes a test
// binary's folder when it exits, so the next test binary removes those of dead processes.
const buildDirPrefix = "securemsg-privstack-bin-"

func removeStaleBuildDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), buildDirPrefix+"*"))
	for _, dir := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), buildDirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

// tools caches the paths of pinned tools (scripts/lib/tools.sh), installed on first use.
var tools struct {
	mu    sync.Mutex
	paths map[string]string
}

// toolPath returns the pinned binary NAME from scripts/lib/tools.sh, installing it on first use
// (go install into .tmp/bin, so later runs find it at once).
func toolPath(name string) (string, error) {
	tools.mu.Lock()
	defer tools.mu.Unlock()
	if p, ok := tools.paths[name]; ok {
		return p, nil
	}
	root := testkit.RepoRoot()
	cmd := exec.Command("bash", "-c", `source scripts/lib/tools.sh && tool_path "$1"`, "_", name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "SECUREMSG_ROOT="+root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	p := strings.TrimSpace(string(out))
	if err == nil {
		_, err = os.Stat(p)
	}
	if err != nil {
		return "", &unavailableError{component: name, err: fmt.Errorf("pinned tool %s (scripts/lib/tools.sh): %v\n%s", name, err, stderr.String())}
	}
	if tools.paths == nil {
		tools.paths = map[string]string{}
	}
	tools.paths[name] = p
	return p, nil
}
