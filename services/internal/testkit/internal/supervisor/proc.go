package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one program the supervisor runs, which it can stop and start again with the same
// command line, environment, ports and state. Its stdout and stderr go to one log file, appended
// to across restarts.
//
// An attached process (recordPath empty: the tests' private stacks) is a child in its own
// process group that the kernel kills when the supervisor dies. A detached one (the dev stack)
// gets a session of its own and outlives the supervisor; recordPath then names the file that
// lets a later run find it again (see record).
type process struct {
	name     string // component name, used in every error
	path     string
	args     []string
	env      []string // the whole environment of the process
	settings []string // what, beside the binary, decides whether a running copy is current
	logPath  string
	cred     *syscall.Credential // run as this user (Postgres refuses to run as root)
	stopSig  syscall.Signal      // graceful stop signal
	stopWait time.Duration       // how long a graceful stop may take before SIGKILL

	recordPath string // detached mode: where the running process is recorded

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited and was reaped
	waitErr error
	adopted int   // pid of a detached process an earlier run started, found through its record
	groups  []int // every process group started, for cleanup and orphan checks
}

// newProcess prepares a process logging to logPath, stopped with SIGTERM within 15s.
func newProcess(name, logPath, path string, args ...string) *process {
	return &process{
		name: name, path: path, args: args, env: os.Environ(), logPath: logPath,
		stopSig: syscall.SIGTERM, stopWait: 15 * time.Second,
	}
}

// record is what a detached process leaves behind so that `up`, `status` and `down` find it
// from another run. A pid alone is not enough: after the process dies the kernel may hand the
// number to another program, so the process's start time (in clock ticks since boot, field 22
// of /proc/<pid>/stat) must match as well. The hashes tell whether the running copy is the one
// `up` would start now.
type record struct {
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	Path       string `json:"path"`
	Binary     string `json:"binary_sha256"`
	Settings   string `json:"settings_sha256"`
}

// start runs the process; it does not wait for it to be ready.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil || p.adopted != 0 {
		return fmt.Errorf("supervisor: %s is already running", p.name)
	}
	if err := os.MkdirAll(filepath.Dir(p.logPath), 0o755); err != nil {
		return fmt.Errorf("supervisor: %s: %w", p.name, err)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("supervisor: %s: open log: %w", p.name, err)
	}
	defer func() { _ = logf.Close() }() // the child has its own copy of the descriptor
	if _, err := fmt.Fprintf(logf, "--- supervisor: starting %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("supervisor: %s: write log: %w", p.name, err)
	}

	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if p.recordPath != "" {
		// A session of its own: the process keeps running when the terminal, `make` or this
		// supervisor goes away, and its pid is its group id for Stop.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: p.cred}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			// Own process group: Stop and cleanup signal the whole group (Postgres backends,
			// any helper a tool forks), so nothing survives as an orphan.
			Setpgid: true,
			// Backstop for a test binary that dies without running cleanups (go test
			// -timeout): the kernel kills the child when its parent goes.
			Pdeathsig:  syscall.SIGKILL,
			Credential: p.cred,
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("supervisor: start %s (%s): %w", p.name, p.path, err)
	}
	p.cmd = cmd
	p.groups = append(p.groups, cmd.Process.Pid)
	done := make(chan struct{})
	p.done = done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	if p.recordPath != "" {
		if err := p.writeRecord(cmd.Process.Pid); err != nil {
			return err
		}
	}
	return nil
}

func (p *process) writeRecord(pid int) error {
	ticks, _ := startTicks(pid)
	bin, err := fileSHA256(p.path)
	if err != nil {
		return fmt.Errorf("supervisor: %s: %w", p.name, err)
	}
	data, _ := json.Marshal(record{PID: pid, StartTicks: ticks, Path: p.path, Binary: bin, Settings: p.settingsHash()})
	if err := os.WriteFile(p.recordPath, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("supervisor: %s: record pid: %w", p.name, err)
	}
	return nil
}

// adopt looks for a process an earlier run recorded and still running; it returns the record
// and true when there is one, which the process then stands for.
func (p *process) adopt() (record, bool) {
	if p.recordPath == "" {
		return record{}, false
	}
	rec, ok := readRecord(p.recordPath)
	if !ok {
		return record{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		p.adopted = rec.PID
		p.groups = append(p.groups, rec.PID)
	}
	return rec, true
}

// readRecord returns the record at path when it names a live process that is the one recorded.
// It also reads the "pid path" lines that scripts/stack.sh wrote before this supervisor, so a
// stack started by the old script is found, and restarted as changed, rather than orphaned.
func readRecord(path string) (record, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return record{}, false
	}
	var rec record
	if json.Unmarshal(data, &rec) != nil {
		f := strings.Fields(string(data))
		if len(f) != 2 {
			return record{}, false
		}
		rec.PID, _ = strconv.Atoi(f[0])
		rec.Path = f[1]
	}
	if rec.PID <= 0 || !alive(rec.PID) {
		return record{}, false
	}
	if rec.StartTicks != 0 {
		if ticks, ok := startTicks(rec.PID); !ok || ticks != rec.StartTicks {
			return record{}, false
		}
	} else if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", rec.PID)); err != nil ||
		!strings.Contains(string(cmdline), rec.Path) {
		return record{}, false
	}
	return rec, true
}

// changed says what differs between the recorded process and the one start would run now
// ("binary", "settings"), or "" when it is current.
func (p *process) changed(rec record) string {
	if bin, err := fileSHA256(p.path); err != nil || bin != rec.Binary || rec.Path != p.path {
		return "binary"
	}
	if rec.Settings != p.settingsHash() {
		return "settings"
	}
	return ""
}

func (p *process) settingsHash() string {
	h := sha256.New()
	for _, s := range append(append([]string{p.path}, p.args...), p.settings...) {
		_, _ = fmt.Fprintf(h, "%d:%s\n", len(s), s) // a hash.Hash never fails to write
	}
	return hex.EncodeToString(h.Sum(nil))
}

// exited returns a channel closed when the current run has exited (nil when not started by
// this supervisor).
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// pid is the running process's id, or 0.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cmd != nil:
		select {
		case <-p.done:
			return 0
		default:
			return p.cmd.Process.Pid
		}
	case p.adopted != 0 && alive(p.adopted):
		return p.adopted
	}
	return 0
}

// running reports whether the process was started and has not exited.
func (p *process) running() bool { return p.pid() != 0 }

// stop sends the graceful stop signal to the process group and waits; after stopWait it kills
// the group. Stopping a stopped process does nothing.
func (p *process) stop() error { return p.halt(p.stopSig, p.stopWait) }

// kill sends SIGKILL to the process group at once: a crash, not a shutdown.
func (p *process) kill() error { return p.halt(syscall.SIGKILL, 0) }

func (p *process) halt(sig syscall.Signal, wait time.Duration) error {
	pgid := p.pid()
	if pgid == 0 {
		p.forget()
		return nil
	}
	_ = syscall.Kill(-pgid, sig)
	if wait > 0 {
		p.waitExit(pgid, wait)
	}
	// Whatever is left of the group (the leader after a timeout, children that outlive it) goes.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	var err error
	if !p.waitExit(pgid, 10*time.Second) {
		err = fmt.Errorf("supervisor: %s (pid %d) did not exit within 10s of SIGKILL", p.name, pgid)
	}
	// Members the leader did not wait for die a moment later, once init reaps them. Only a
	// group that is entirely gone has released its ports and files.
	if err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for interval := time.Millisecond; groupAlive(pgid); interval = min(2*interval, 50*time.Millisecond) {
			if time.Now().After(deadline) {
				err = fmt.Errorf("supervisor: %s: processes of group %d still exist 5s after SIGKILL", p.name, pgid)
				break
			}
			time.Sleep(interval) // polling the kernel's process table, not synchronising
		}
	}
	p.forget()
	return err
}

// waitExit waits up to d for the process pid to exit: through Wait for a child of this
// supervisor, through /proc for one an earlier run started.
func (p *process) waitExit(pid int, d time.Duration) bool {
	if done := p.exited(); done != nil {
		select {
		case <-done:
			return true
		case <-time.After(d):
			return false
		}
	}
	deadline := time.Now().Add(d)
	for interval := time.Millisecond; alive(pid); interval = min(2*interval, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval) // polling the kernel's process table, not synchronising
	}
	return true
}

func (p *process) forget() {
	p.mu.Lock()
	p.cmd, p.done, p.adopted = nil, nil, 0
	p.mu.Unlock()
	if p.recordPath != "" {
		_ = os.Remove(p.recordPath)
	}
}

// failure builds an error naming the component, what went wrong, its exit status when it has
// exited, its log file and the log's last lines (startup output: no PHI has been handled yet).
func (p *process) failure(what string, cause error) error {
	p.mu.Lock()
	waitErr, done := p.waitErr, p.done
	p.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", p.name, what)
	if cause != nil {
		fmt.Fprintf(&b, ": %v", cause)
	}
	if done != nil {
		select {
		case <-done:
			fmt.Fprintf(&b, " (exited: %v)", waitErr)
		default:
		}
	}
	fmt.Fprintf(&b, "; log %s", p.logPath)
	if tail := LogTail(p.logPath, 15); tail != "" {
		b.WriteString("\n" + tail)
	}
	return errors.New(b.String())
}

// waitReady polls ready until it succeeds, the process exits, or within passes.
func (p *process) waitReady(ctx context.Context, within time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(within)
	var last error
	for interval := 10 * time.Millisecond; ; interval = min(2*interval, 250*time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		last = ready(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return p.failure(fmt.Sprintf("not ready within %s", within), last)
		}
		if !p.running() {
			return p.failure("exited while starting", last)
		}
		select {
		case <-p.exited():
		case <-ctx.Done():
			return p.failure("start cancelled", ctx.Err())
		case <-time.After(interval): // polling for readiness, not synchronising
		}
	}
}

// LogTail returns the last n lines of a log file, indented, for error messages.
func LogTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	const maxBytes = 4 << 10
	if len(data) > maxBytes {
		data = data[len(data)-maxBytes:]
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    | " + strings.Join(lines, "\n    | ")
}

// alive reports whether pid is a process that has not exited (zombies have).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	state, _, ok := statStateGroup(stat)
	return ok && state != 'Z' && state != 'X'
}

// groupAlive reports whether any process of the process group pgid still runs. Zombies do not
// count: an orphaned member is reaped by init, which some sandboxes' init does only now and then.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true // cannot tell: assume the signal's answer
	}
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		state, group, ok := statStateGroup(stat)
		if ok && group == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// statFields returns the fields of /proc/<pid>/stat after "pid (comm)", where comm may itself
// hold spaces and parentheses: state is fields[0], pgrp fields[2], starttime fields[19].
func statFields(stat []byte) []string {
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}

// statStateGroup reads the state and process group of /proc/<pid>/stat.
func statStateGroup(stat []byte) (state byte, pgrp int, ok bool) {
	f := statFields(stat)
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pgrp, err := strconv.Atoi(f[2])
	return f[0][0], pgrp, err == nil
}

// startTicks is when pid started, in clock ticks since boot.
func startTicks(pid int) (uint64, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	f := statFields(stat)
	if len(f) < 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	return n, err == nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }() // read-only
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
