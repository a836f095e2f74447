//go:build unix && !linux

package main

// cpuNow is only implemented on Linux (/proc).
func cpuNow() (cpuSample, bool) { return cpuSample{}, false }
