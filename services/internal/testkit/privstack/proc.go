package privstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one child process that can be stopped and started again with the same command
// line, environment, ports and state. Its stdout and stderr go to one log file, appended to
// across restarts.
type process struct {
	name     string // component name, used in every error
	path     string
	args     []string
	env      []string
	logPath  string
	cred     *syscall.Credential // run as this user (Postgres refuses to run as root)
	stopSig  syscall.Signal      // graceful stop signal
	stopWait time.Duration       // how long a graceful stop may take before SIGKILL

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited and was reaped
	waitErr error
	groups  []int // every process group started, for cleanup and orphan checks
}

// start runs the process; it does not wait for it to be ready.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("privstack: %s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("privstack: %s: open log: %w", p.name, err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	fmt.Fprintf(logf, "--- privstack: starting %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: Stop and cleanup signal the whole group (Postgres backends, any
		// helper a tool forks), so nothing survives as an orphan.
		Setpgid: true,
		// Backstop for a test binary that dies without running cleanups (go test -timeout):
		// the kernel kills the child when its parent goes.
		Pdeathsig:  syscall.SIGKILL,
		Credential: p.cred,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("privstack: start %s (%s): %w", p.name, p.path, err)
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
	return nil
}

// exited returns a channel closed when the current run has exited (nil when not started).
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// pid is the running process's id, or 0.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// running reports whether the process was started and has not exited.
func (p *process) running() bool { return p.pid() != 0 }

// stop sends the graceful stop signal to the process group and waits; after stopWait it kills
// the group. Stopping a stopped process does nothing.
func (p *process) stop() error { return p.halt(p.stopSig, p.stopWait) }

// kill sends SIGKILL to the process group at once: a crash, not a shutdown.
func (p *process) kill() error { return p.halt(syscall.SIGKILL, 0) }

func (p *process) halt(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, sig)
	if wait > 0 {
		select {
		case <-done:
		case <-time.After(wait):
		}
	}
	// Whatever is left of the group (the leader after a timeout, children that outlive it) goes.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	var err error
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("privstack: %s (pid %d) did not exit within 10s of SIGKILL", p.name, pgid)
	}
	// Members the leader did not wait for die a moment later, once init reaps them. Only a
	// group that is entirely gone has released its ports and files.
	if err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for interval := time.Millisecond; groupAlive(pgid); interval = min(2*interval, 50*time.Millisecond) {
			if time.Now().After(deadline) {
				err = fmt.Errorf("privstack: %s: processes of group %d still exist 5s after SIGKILL", p.name, pgid)
				break
			}
			time.Sleep(interval) // polling the kernel's process table, not synchronising
		}
	}
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	return err
}

// failure builds an error naming the component, what went wrong, its exit status when it has
// exited, its log file and the log's last lines (startup output: no PHI has been handled yet).
func (p *process) failure(what string, cause error) error {
	p.mu.Lock()
	waitErr, done := p.waitErr, p.done
	p.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "privstack: %s: %s", p.name, what)
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
	if tail := logTail(p.logPath, 15); tail != "" {
		b.WriteString("\n" + tail)
	}
	return errors.New(b.String())
}

// waitReady polls ready until it succeeds, the process exits, or within passes.
func (p *process) waitReady(ctx context.Context, within time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(within)
	exited := p.exited()
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
		select {
		case <-exited:
			return p.failure("exited while starting", last)
		case <-ctx.Done():
			return p.failure("start cancelled", ctx.Err())
		case <-time.After(interval): // polling for readiness, not synchronising
		}
	}
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
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

// freePort returns a port nothing listens on at the moment. Another process could take it
// before the component binds it; the component's start then fails with a clear error.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("privstack: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// hostPort formats a loopback address.
func hostPort(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

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

// statStateGroup reads the state and process group of /proc/<pid>/stat:
// "pid (comm) state ppid pgrp ...", where comm may itself hold spaces and parentheses.
func statStateGroup(stat []byte) (state byte, pgrp int, ok bool) {
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pgrp, err := strconv.Atoi(f[2])
	return f[0][0], pgrp, err == nil
}

// tcpOpen reports whether something accepts connections at addr.
func tcpOpen(ctx context.Context, addr string) error {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
