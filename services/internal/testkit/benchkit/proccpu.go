package benchkit

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of /proc/<pid>/stat times; Linux fixes it at 100 for
// every architecture this suite runs on.
const clockTicksPerSecond = 100

// ProcessCPU is the CPU time used so far by every process whose command name is comm (as in
// /proc/<pid>/comm), including their children that have exited and been waited for — for a
// server that forks a process per connection (Postgres), its whole cost. Differences between two
// calls attribute another process's work to what ran in between. ok is false where /proc cannot
// be read (not Linux).
func ProcessCPU(comm string) (cpu time.Duration, ok bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	var ticks int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited since the listing
		}
		ticks += statTicks(string(stat), comm)
	}
	return time.Duration(ticks) * time.Second / clockTicksPerSecond, true
}

// statTicks returns utime+stime+cutime+cstime of one /proc/<pid>/stat line when its command is
// comm, else 0. The command sits in parentheses and may itself contain spaces or ')', so the
// fields are counted from the last ')'.
func statTicks(stat, comm string) int64 {
	open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || end < open || stat[open+1:end] != comm {
		return 0
	}
	fields := strings.Fields(stat[end+1:])
	// After the command: state(0) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime(11) stime(12) cutime(13) cstime(14).
	if len(fields) < 15 {
		return 0
	}
	var sum int64
	for _, i := range []int{11, 12, 13, 14} {
		v, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0
		}
		sum += v
	}
	return sum
}
