// Package promtext writes metrics in the Prometheus text exposition format, version
// 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/), for code that
// collects its values itself and writes them in one go, such as the plugin's metrics
// path: no registry, no collectors, no dependency.
//
// A caller builds a slice of Family values and passes it to Write:
//
//	verifications := promtext.Family{Name: "apikey_verifications_total", Help: "Verify outcomes.", Type: promtext.Counter}
//	verifications.Add(12, promtext.L("mount", "apikey/"), promtext.L("role", "app"), promtext.L("code", "VALID"))
//	err := promtext.Write(w, []promtext.Family{verifications})
//
// Write validates everything before it writes a byte, so an invalid name or a duplicate
// series never produces half an exposition. The output is deterministic: families sorted
// by name, each written once with all its samples (families of the same name are
// merged), samples sorted by their labels. Label values and help texts may hold any
// bytes: they are escaped, and invalid UTF-8 is replaced with U+FFFD, so the output
// always parses.
package promtext

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ContentType is the Content-Type of the text exposition format 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Type is a metric type. Only counters and gauges are supported.
type Type string

const (
	// Counter is a cumulative value that only goes up (and restarts from zero with the
	// process). Its name should end in _total.
	Counter Type = "counter"
	// Gauge is a value that goes up and down.
	Gauge Type = "gauge"
)

// Label is one label of a sample.
type Label struct {
	Name, Value string
}

// L is a Label.
func L(name, value string) Label {
	return Label{Name: name, Value: value}
}

// Sample is one series of a family: its labels and its current value.
type Sample struct {
	Labels []Label
	Value  float64
}

// Family is a metric family: a name, a help text and a type shared by its samples.
type Family struct {
	Name string
	// Help says what the metric counts; it is required.
	Help    string
	Type    Type
	Samples []Sample
}

// Add appends a sample with value and labels to f.
func (f *Family) Add(value float64, labels ...Label) {
	f.Samples = append(f.Samples, Sample{Labels: labels, Value: value})
}

// Write validates fams and writes them to w in the text exposition format. Families of
// the same name are merged (they must agree on help and type); a family without samples
// is written with its HELP and TYPE lines only. Nothing is written if fams is invalid:
// a metric or label name that is not a valid Prometheus name, a label name starting
// with "__" or given twice in a sample, an unknown type, an empty help text, or two
// samples of a family with the same label set.
func Write(w io.Writer, fams []Family) error {
	merged, err := merge(fams)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, f := range merged {
		buf.WriteString("# HELP ")
		buf.WriteString(f.Name)
		buf.WriteByte(' ')
		buf.WriteString(escapeHelp(f.Help))
		buf.WriteString("\n# TYPE ")
		buf.WriteString(f.Name)
		buf.WriteByte(' ')
		buf.WriteString(string(f.Type))
		buf.WriteByte('\n')
		for _, s := range f.Samples {
			buf.WriteString(f.Name)
			if len(s.Labels) > 0 {
				buf.WriteByte('{')
				for i, l := range s.Labels {
					if i > 0 {
						buf.WriteByte(',')
					}
					buf.WriteString(l.Name)
					buf.WriteString(`="`)
					buf.WriteString(escapeLabelValue(l.Value))
					buf.WriteByte('"')
				}
				buf.WriteByte('}')
			}
			buf.WriteByte(' ')
			buf.WriteString(FormatFloat(s.Value))
			buf.WriteByte('\n')
		}
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// merge validates fams and returns them merged by name, sorted by name, with the
// samples of each sorted by labels. The callers' slices are not modified.
func merge(fams []Family) ([]Family, error) {
	byName := make(map[string]int, len(fams))
	var out []Family
	for _, f := range fams {
		if err := validateFamily(f); err != nil {
			return nil, err
		}
		i, seen := byName[f.Name]
		if !seen {
			byName[f.Name] = len(out)
			out = append(out, Family{Name: f.Name, Help: f.Help, Type: f.Type})
			i = len(out) - 1
		} else if out[i].Type != f.Type || out[i].Help != f.Help {
			return nil, fmt.Errorf("promtext: metric %s given twice with different help or type", f.Name)
		}
		for _, s := range f.Samples {
			if err := validateLabels(f.Name, s.Labels); err != nil {
				return nil, err
			}
		}
		out[i].Samples = append(out[i].Samples, f.Samples...)
	}
	slices.SortFunc(out, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	for _, f := range out {
		slices.SortStableFunc(f.Samples, func(a, b Sample) int { return compareLabels(a.Labels, b.Labels) })
		if err := checkDuplicates(f); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func validateFamily(f Family) error {
	if !ValidMetricName(f.Name) {
		return fmt.Errorf("promtext: invalid metric name %q", f.Name)
	}
	if f.Type != Counter && f.Type != Gauge {
		return fmt.Errorf("promtext: metric %s: unsupported type %q", f.Name, f.Type)
	}
	if f.Help == "" {
		return fmt.Errorf("promtext: metric %s: no help text", f.Name)
	}
	return nil
}

func validateLabels(metric string, labels []Label) error {
	for i, l := range labels {
		if !ValidLabelName(l.Name) {
			return fmt.Errorf("promtext: metric %s: invalid label name %q", metric, l.Name)
		}
		for _, prev := range labels[:i] {
			if prev.Name == l.Name {
				return fmt.Errorf("promtext: metric %s: label %s given twice in a sample", metric, l.Name)
			}
		}
	}
	return nil
}

// compareLabels orders label lists pairwise by name, then value, as they are written.
func compareLabels(a, b []Label) int {
	for i := range min(len(a), len(b)) {
		if c := cmp.Compare(a[i].Name, b[i].Name); c != 0 {
			return c
		}
		if c := cmp.Compare(a[i].Value, b[i].Value); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// checkDuplicates refuses two samples of f with the same label set, in whatever order
// their labels were given. Values are compared as written (after the UTF-8 repair), since
// that is what Prometheus sees.
func checkDuplicates(f Family) error {
	seen := make(map[string]bool, len(f.Samples))
	var key strings.Builder
	for _, s := range f.Samples {
		ls := slices.Clone(s.Labels)
		slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
		key.Reset()
		for _, l := range ls {
			key.WriteString(l.Name)
			key.WriteString(`="`)
			key.WriteString(escapeLabelValue(l.Value))
			key.WriteString(`",`)
		}
		if seen[key.String()] {
			return fmt.Errorf("promtext: metric %s: two samples with labels {%s}", f.Name, strings.TrimSuffix(key.String(), ","))
		}
		seen[key.String()] = true
	}
	return nil
}

// ValidMetricName reports whether name matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func ValidMetricName(name string) bool {
	return validName(name, true)
}

// ValidLabelName reports whether name matches [a-zA-Z_][a-zA-Z0-9_]* and does not start
// with "__" (reserved for Prometheus's internal labels).
func ValidLabelName(name string) bool {
	return validName(name, false) && !strings.HasPrefix(name, "__")
}

func validName(name string, colon bool) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' ||
			colon && c == ':' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}

var (
	labelValueEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper       = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// escapeLabelValue escapes backslash, double quote and newline, and replaces invalid
// UTF-8 with U+FFFD.
func escapeLabelValue(s string) string {
	return labelValueEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD"))
}

// escapeHelp escapes backslash and newline, and replaces invalid UTF-8 with U+FFFD.
func escapeHelp(s string) string {
	return helpEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD"))
}

// FormatFloat formats v as Prometheus writes sample values: +Inf, -Inf and NaN by name,
// integral values (below 1e21 in magnitude) as integers without exponent, others in the
// shortest form that parses back to v.
func FormatFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == 0:
		return "0" // and not -0
	case v == math.Trunc(v) && math.Abs(v) < 1e21:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
