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

// row is one measured line of the table; res nil means it was skipped or failed (note
// says why).
type row struct {
	name string
	res  *result
	note string
	// skipped: not measured on purpose (an optional binary was not given), not a failure.
	skipped bool
}

// ratio compares two rows. target empty: reported only.
type ratio struct {
	name   string
	value  float64
	valid  bool
	target string // e.g. "≥ 0.95"
	pass   bool
	note   string
}

func rpsRatio(name string, num, den *row, min float64) ratio {
	r := ratio{name: name}
	if min > 0 {
		r.target = fmt.Sprintf("≥ %.2f", min)
	}
	if num.res == nil || den.res == nil || den.res.rps() == 0 {
		r.note = "not measured"
		return r
	}
	r.value = num.res.rps() / den.res.rps()
	r.valid = true
	r.pass = min <= 0 || r.value >= min
	return r
}

func p50Ratio(name string, num, den *row, maxVal float64) ratio {
	r := ratio{name: name, target: fmt.Sprintf("≤ %.2f", maxVal)}
	if num.res == nil || den.res == nil || den.res.pct(50) == 0 {
		r.note = "not measured"
		return r
	}
	r.value = float64(num.res.pct(50)) / float64(den.res.pct(50))
	r.valid = true
	r.pass = r.value <= maxVal
	return r
}

func (r ratio) valueText() string {
	if !r.valid {
		return "-"
	}
	return fmt.Sprintf("%.2f", r.value)
}

func (r ratio) resultText() string {
	switch {
	case !r.valid && r.target != "":
		return "SKIP"
	case !r.valid:
		return "-"
	case r.target == "":
		return "(report)"
	case r.pass:
		return "PASS"
	default:
		return "MISS"
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

func (r row) cells() []string {
	if r.res == nil {
		return []string{r.name, "-", "-", "-", "-", "-", r.note}
	}
	server := "n/a"
	if v, ok := r.res.cpu.serverPerRequest(r.res.n); ok {
		server = fmt.Sprintf("%.0fµs", float64(v)/1e3)
	}
	other := "n/a"
	if v, ok := r.res.cpu.other(); ok {
		other = fmt.Sprintf("%.0f%%", 100*v)
	}
	note := r.note
	if r.res.errs > 0 {
		e := fmt.Sprintf("%d errors (first: %s)", r.res.errs, r.res.firstErr)
		if note != "" {
			note += "; "
		}
		note += e
	}
	return []string{r.name, fmt.Sprintf("%.0f", r.res.rps()), fmtDur(r.res.pct(50)), fmtDur(r.res.pct(99)), server, other, note}
}

// report is everything printed at the end.
type report struct {
	facts  []string // "key: value" lines above the table
	rows   []*row
	ratios []ratio
	notes  []string
}

func (rep *report) printText(w io.Writer) {
	for _, f := range rep.facts {
		fmt.Fprintln(w, f)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// AlignRight aligns every column right; the name column reads better padded on the
	// right, so it is padded by hand.
	width := len("row")
	for _, r := range rep.rows {
		width = max(width, len([]rune(r.name)))
	}
	for _, r := range rep.ratios {
		width = max(width, len([]rune(r.name)))
	}
	pad := func(s string) string { return s + strings.Repeat(" ", width-len([]rune(s))) }
	fmt.Fprintf(tw, "%s\treq/s\tp50\tp99\tCPU/req\tother CPU\t\n", pad("row"))
	for _, r := range rep.rows {
		c := r.cells()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t", pad(c[0]), c[1], c[2], c[3], c[4], c[5])
		if c[6] != "" {
			fmt.Fprintf(tw, "  %s", c[6])
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "%s\t\t\t\t\t\t\n", strings.Repeat("-", width))
	fmt.Fprintf(tw, "%s\tratio\ttarget\tresult\t\t\t\n", pad("ratio"))
	for _, r := range rep.ratios {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t", pad(r.name), r.valueText(), r.target, r.resultText())
		if r.note != "" {
			fmt.Fprintf(tw, "  %s", r.note)
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
	b.WriteString("## Load benchmark\n\n")
	for _, f := range rep.facts {
		fmt.Fprintf(&b, "- %s\n", mdEscape(f))
	}
	b.WriteString("\n| row | req/s | p50 | p99 | CPU/req | other CPU | ratio | target | result | note |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |\n")
	for _, r := range rep.rows {
		c := r.cells()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | | | | %s |\n", mdEscape(c[0]), c[1], c[2], c[3], c[4], c[5], mdEscape(c[6]))
	}
	for _, r := range rep.ratios {
		fmt.Fprintf(&b, "| **%s** | | | | | | %s | %s | %s | %s |\n", mdEscape(r.name), r.valueText(), r.target, r.resultText(), mdEscape(r.note))
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

func machineFacts(vaultVersion, pluginVersion string, cfg config) []string {
	cpu := fmt.Sprintf("%d CPUs (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if m := cpuModel(); m != "" {
		cpu += ", " + m
	}
	return []string{
		"machine: " + cpu + ", " + runtime.GOOS + "/" + runtime.GOARCH,
		"go: " + runtime.Version() + " (the harness; `make bench` builds the plugin and gateway with the same toolchain)",
		"vault: v" + strings.TrimPrefix(vaultVersion, "v") + " dev server (in-memory storage, no audit device), plugin " + pluginVersion,
		fmt.Sprintf("load: %d concurrent keep-alive HTTP/1.1 connections on loopback, root token; per row %s warm-up + %s measured", cfg.conc, cfg.warmup, cfg.dur),
		"load average at start: " + loadAvg(),
	}
}
