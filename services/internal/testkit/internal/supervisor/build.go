package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// builds serialises `go build` runs (the machine has two cores; concurrent builds only fight)
// and remembers, for stacks without a BuildDir, what this process built already.
var builds struct {
	mu   sync.Mutex
	dir  string            // per-process folder of the private stacks' binaries
	bins map[string]string // package ("./devstack/cmd/oidcdev") -> binary
	errs map[string]error
}

// build returns the binaries of pkgs (paths relative to the repository root). A private stack
// builds each package at most once per process, all missing ones in a single `go build` (one
// invocation compiles in parallel and links once per binary). The dev stack builds into
// BuildDir, one package at a time so that one service that does not compile keeps no other
// from starting, and only when a source file is newer than the binary's last build.
func (s *Stack) build(pkgs ...string) (map[string]string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if s.cfg.BuildDir != "" {
		out := map[string]string{}
		var errs []error
		for _, pkg := range pkgs {
			bin, changed, err := buildStale(s.cfg.Root, s.cfg.BuildDir, pkg)
			out[pkg] = bin
			if changed {
				s.logf("  %-13s %-44s %s", "build", pkg, "new binary")
			}
			errs = append(errs, err)
		}
		return out, errors.Join(errs...)
	}
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
		if builds.dir == "" {
			removeStaleBuildDirs()
			builds.dir = filepath.Join(os.TempDir(), buildDirPrefix+strconv.Itoa(os.Getpid()))
		}
		if err := goBuild(s.cfg.Root, builds.dir, todo...); err != nil {
			for _, pkg := range todo {
				builds.errs[pkg] = err
			}
			return nil, err
		}
		for _, pkg := range todo {
			builds.bins[pkg] = filepath.Join(builds.dir, path.Base(pkg))
		}
	}
	out := make(map[string]string, len(pkgs))
	for _, pkg := range pkgs {
		out[pkg] = builds.bins[pkg]
	}
	return out, nil
}

// buildStale builds pkg into dir unless no file of its trees changed since the last build. The
// new binary replaces the old one only when it differs, so an unchanged service is not
// restarted; a running process keeps the file it started from either way (rename, not write).
// It reports whether the binary changed.
func buildStale(root, dir, pkg string) (string, bool, error) {
	name := path.Base(pkg)
	bin := filepath.Join(dir, name)
	stamp := filepath.Join(dir, "."+name+".built")
	trees := []string{strings.Split(strings.TrimPrefix(pkg, "./"), "/")[0], "gen", "go.work", "go.work.sum"}
	if st, err := os.Stat(stamp); err == nil && fileExists(bin) && !newerThan(root, trees, st.ModTime()) {
		return bin, false, nil
	}
	// Stamp before building: an edit made during the build triggers the next one.
	began := time.Now()
	tmp := filepath.Join(dir, ".new")
	if err := goBuild(root, tmp, pkg); err != nil {
		return bin, false, err
	}
	changed := false
	if old, err := fileSHA256(bin); err != nil || old != mustSHA256(filepath.Join(tmp, name)) {
		if err := os.Rename(filepath.Join(tmp, name), bin); err != nil {
			return bin, false, err
		}
		changed = true
	}
	if err := os.WriteFile(stamp, nil, 0o644); err != nil {
		return bin, changed, err
	}
	return bin, changed, os.Chtimes(stamp, began, began)
}

func mustSHA256(path string) string {
	sum, _ := fileSHA256(path)
	return sum
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// newerThan reports whether any file under root/trees was modified after t.
func newerThan(root string, trees []string, t time.Time) bool {
	errFound := errors.New("found")
	for _, tree := range trees {
		err := filepath.WalkDir(filepath.Join(root, tree), func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil //nolint:nilerr // a tree that does not exist has nothing newer
			}
			if info, err := d.Info(); err == nil && info.ModTime().After(t) {
				return errFound
			}
			return nil
		})
		if errors.Is(err, errFound) {
			return true
		}
	}
	return false
}

// goBuild runs `go build -o dir/ pkgs...` at the repository root, through go.work whatever the
// caller's GOWORK says: the packages live in several modules.
func goBuild(root, dir string, pkgs ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("build folder: %w", err)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = root
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOWORK=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out.String())
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

// tools caches the paths of pinned tools.
var tools struct {
	mu    sync.Mutex
	paths map[string]string
}

// ToolPath returns the pinned binary name from scripts/lib/tools.sh, the one list of pinned
// tools, installing it on first use (go install into .tmp/bin, so later runs find it at once).
// A tool that cannot be installed is an UnavailableError.
func ToolPath(root, name string) (string, error) {
	tools.mu.Lock()
	defer tools.mu.Unlock()
	if p, ok := tools.paths[name]; ok {
		return p, nil
	}
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
		return "", &UnavailableError{Component: name, Err: fmt.Errorf("pinned tool %s (scripts/lib/tools.sh): %v\n%s", name, err, stderr.String())}
	}
	if tools.paths == nil {
		tools.paths = map[string]string{}
	}
	tools.paths[name] = p
	return p, nil
}
