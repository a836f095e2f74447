//go:build unix

package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one throughput or latency line: req/s (0: not a throughput row), p50, p99.
type row struct {
	name     string
	rps      float64
	p50, p99 time.Duration
	note     string
}

// outcome is one result against its target. target "" is reported only.
type outcome struct {
	name   string
	value  string
	target string
	pass   bool
	valid  bool
	note   string
}

func (o outcome) resultText() string {
	switch {
	case !o.valid && o.target != "":
		return "SKIP"
	case !o.valid:
		return "-"
	case o.target == "":
		return "(report)"
	case o.pass:
		return "PASS"
	default:
		return "MISS"
	}
}

// report is everything printed at the end.
type report struct {
	facts    []string
	rows     []row
	outcomes []outcome
	notes    []string
}

func (rep *report) addRow(r row)            { rep.rows = append(rep.rows, r) }
func (rep *report) add(o outcome)           { rep.outcomes = append(rep.outcomes, o) }
func (rep *report) note(f string, a ...any) { rep.notes = append(rep.notes, fmt.Sprintf(f, a...)) }

// atLeast is a ratio with a lower target.
func atLeast(name string, v, min float64, note string) outcome {
	return outcome{name: name, value: fmt.Sprintf("%.2f", v), target: fmt.Sprintf("≥ %.2f", min), pass: v >= min, valid: true, note: note}
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

func (r row) cells() []string {
	rps := "-"
	if r.rps > 0 {
		rps = fmt.Sprintf("%.0f", r.rps)
	}
	p50, p99 := fmtDur(r.p50), fmtDur(r.p99)
	if r.p50 == 0 && r.p99 == 0 {
		p50, p99 = "-", "-" // a rate, not a latency row
	}
	return []string{r.name, rps, p50, p99, r.note}
}

func (rep *report) printText(w io.Writer) {
	for _, f := range rep.facts {
		fmt.Fprintln(w, f)
	}
	fmt.Fprintln(w)
	width := len("result")
	for _, r := range rep.rows {
		width = max(width, len([]rune(r.name)))
	}
	for _, o := range rep.outcomes {
		width = max(width, len([]rune(o.name)))
	}
	pad := func(s string) string { return s + strings.Repeat(" ", width-len([]rune(s))) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\treq/s\tp50\tp99\t\n", pad("row"))
	for _, r := range rep.rows {
		c := r.cells()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t", pad(c[0]), c[1], c[2], c[3])
		if c[4] != "" {
			fmt.Fprintf(tw, "  %s", c[4])
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "%s\t\t\t\t\n", strings.Repeat("-", width))
	fmt.Fprintf(tw, "%s\tvalue\ttarget\tresult\t\n", pad("result"))
	for _, o := range rep.outcomes {
		v := o.value
		if !o.valid {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t", pad(o.name), v, o.target, o.resultText())
		if o.note != "" {
			fmt.Fprintf(tw, "  %s", o.note)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if len(rep.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range rep.notes {
			fmt.Fprintln(w, "note:", n)
		}
	}
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func (rep *report) writeMarkdown(path string) error {
	var b strings.Builder
	b.WriteString("## Fleet benchmark\n\n")
	for _, f := range rep.facts {
		fmt.Fprintf(&b, "- %s\n", mdEscape(f))
	}
	b.WriteString("\n| row | req/s | p50 | p99 | note |\n| --- | ---: | ---: | ---: | --- |\n")
	for _, r := range rep.rows {
		c := r.cells()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mdEscape(c[0]), c[1], c[2], c[3], mdEscape(c[4]))
	}
	b.WriteString("\n| result | value | target | result | note |\n| --- | ---: | --- | --- | --- |\n")
	for _, o := range rep.outcomes {
		v := o.value
		if !o.valid {
			v = "-"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mdEscape(o.name), mdEscape(v), o.target, o.resultText(), mdEscape(o.note))
	}
	if len(rep.notes) > 0 {
		b.WriteString("\n")
		for _, n := range rep.notes {
			fmt.Fprintf(&b, "- %s\n", mdEscape(n))
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// cpuModel is the first "model name" of /proc/cpuinfo, if there is one.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg is the 1, 5 and 15 minute load average from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

func machineFacts(vaultVersion string, cfg config) []string {
	cpu := fmt.Sprintf("%d CPUs (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if m := cpuModel(); m != "" {
		cpu += ", " + m
	}
	return []string{
		"machine: " + cpu + ", " + runtime.GOOS + "/" + runtime.GOARCH,
		"go: " + runtime.Version(),
		"vault: v" + strings.TrimPrefix(vaultVersion, "v") + " dev server (in-memory storage, no audit device), plugin " + cfg.pluginVersion,
		fmt.Sprintf("gateways: apikey-gateway processes with a token of policies/verifier.hcl; throughput at %d keep-alive connections, %s warm-up + %s per row in %d interleaved rounds", cfg.conc, cfg.warmup, cfg.dur, cfg.rounds),
		"load average at start: " + loadAvg(),
	}
}
