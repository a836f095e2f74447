//go:build linux

package main

import (
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc CPU times; 100 on every Linux platform Go
// supports.
const clockTicks = 100

// cpuNow reads the machine's busy CPU time and that of this process and each of its
// descendants (Vault, the plugin processes, the gateways), by process name, in seconds.
func cpuNow() (cpuSample, bool) {
	s := cpuSample{procs: map[string]float64{}}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s, false
	}
	var total, idle float64
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, _ := strconv.ParseFloat(v, 64)
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	s.busy = (total - idle) / clockTicks

	type pstat struct {
		ppid int
		comm string
		cpu  float64
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return s, false
	}
	all := map[int]pstat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15): comm may hold spaces and parens.
		lp, rp := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
		if lp < 0 || rp < lp {
			continue
		}
		rest := strings.Fields(string(b)[rp+1:])
		if len(rest) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(rest[1])
		utime, _ := strconv.ParseFloat(rest[11], 64)
		stime, _ := strconv.ParseFloat(rest[12], 64)
		all[pid] = pstat{ppid: ppid, comm: string(b)[lp+1 : rp], cpu: (utime + stime) / clockTicks}
	}
	self := os.Getpid()
	mine := map[int]bool{self: true}
	for changed := true; changed; { // descendants, whatever the order of /proc
		changed = false
		for pid, p := range all {
			if !mine[pid] && mine[p.ppid] {
				mine[pid] = true
				changed = true
			}
		}
	}
	for pid := range mine {
		p := all[pid]
		name := p.comm
		switch {
		case pid == self:
			name = "harness"
		case strings.HasPrefix(name, "vault-plugin"):
			name = "plugin"
		case strings.HasPrefix(noopPluginName, name): // comm is cut to 15 bytes
			name = "noop-plugin"
		case strings.Contains(name, "gateway"):
			name = "gateway"
		}
		s.procs[name] += p.cpu
	}
	return s, true
}
