//go:build unix

package main

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"
)

// cpuSample is the machine's busy CPU time and that of the benchmark's own processes by
// name, in seconds, at one moment.
type cpuSample struct {
	busy  float64
	procs map[string]float64
}

// cpuUse is CPU time spent during measured windows.
type cpuUse struct {
	ok    bool
	wall  time.Duration      // length of the windows
	busy  float64            // whole machine, seconds
	procs map[string]float64 // the benchmark's processes, seconds
}

// add accounts for the window from a to b.
func (u *cpuUse) add(a, b cpuSample, wall time.Duration) {
	if u.procs == nil {
		u.procs = map[string]float64{}
		u.ok = true
	}
	u.wall += wall
	u.busy += b.busy - a.busy
	for name, v := range b.procs {
		if d := v - a.procs[name]; d > 0 {
			u.procs[name] += d
		}
	}
}

// other is the share of the machine's CPU capacity that processes outside the
// benchmark used during the windows.
func (u *cpuUse) other() (float64, bool) {
	if !u.ok || u.wall <= 0 {
		return 0, false
	}
	mine := 0.0
	for _, v := range u.procs {
		mine += v
	}
	return max(0, u.busy-mine) / (u.wall.Seconds() * float64(runtime.NumCPU())), true
}

// perRequest describes the CPU time per request of each of the benchmark's processes.
func (u *cpuUse) perRequest(n int) string {
	if !u.ok || n == 0 {
		return ""
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(u.procs)) {
		if v := u.procs[name]; v > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0fµs", name, v/float64(n)*1e6))
		}
	}
	return strings.Join(parts, ", ")
}

// serverPerRequest is the CPU time per request of every benchmark process but the load
// generator (Vault, the plugin process, the gateway).
func (u *cpuUse) serverPerRequest(n int) (time.Duration, bool) {
	if !u.ok || n == 0 {
		return 0, false
	}
	total := 0.0
	for name, v := range u.procs {
		if name != "harness" {
			total += v
		}
	}
	return time.Duration(total / float64(n) * 1e9), true
}
