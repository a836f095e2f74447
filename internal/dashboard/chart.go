package dashboard

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Charts are SVG drawn on the server: the templates place numbers computed here into
// elements and attributes (html/template escapes them), and CSS classes colour them, so
// neither script nor inline style is needed.

// stackOrder is the order outcomes are stacked in: VALID at the bottom, then the
// refusals in the order verify checks them.
var stackOrder = func() []string {
	out := []string{verifyapi.CodeValid}
	for _, c := range verifyapi.Codes() {
		if c != verifyapi.CodeValid {
			out = append(out, c)
		}
	}
	return out
}()

// stackWithOther is stackOrder and "" for counts under codes the dashboard does not
// know.
var stackWithOther = append(append([]string(nil), stackOrder...), "")

// knownCodes is the set of codes the dashboard colours.
var knownCodes = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range verifyapi.Codes() {
		m[c] = true
	}
	return m
}()

// Chart geometry, in viewBox units.
const (
	chartW     = 1000
	chartH     = 200
	plotLeft   = 48
	plotRight  = 8
	plotTop    = 10
	plotBottom = 28
	maxBuckets = 800
)

type chart struct {
	Title    string
	W, H     int
	Bars     []chartBar
	YTicks   []chartTick
	XTicks   []chartTick
	Legend   []legendItem
	Total    int64
	Refusals int64
	Empty    bool
	// Axis is the plot's frame: x1, y1 (bottom left) to x2.
	AxisX1, AxisX2, AxisY string
}

type chartBar struct {
	Label string // the bar's tooltip: its time and counts
	Segs  []chartSeg
}

type chartSeg struct {
	X, Y, W, H string
	Class      string
}

type chartTick struct {
	X, Y  string
	Label string
}

type legendItem struct {
	Code  string
	Class string
	Count int64
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// niceCeil is the smallest of 1, 2, 5 times a power of ten that is at least v.
func niceCeil(v int64) int64 {
	if v <= 1 {
		return 1
	}
	p := int64(1)
	for {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= v {
				return m * p
			}
		}
		p *= 10
	}
}

// newChart lays out u's series as stacked bars, one per hour or day from u.Start to
// u.End (buckets without traffic included).
func newChart(title string, u usageData) chart {
	c := chart{Title: title, W: chartW, H: chartH, Total: u.Total, Refusals: u.Refusals}
	step := time.Hour
	if u.Granularity == "day" {
		step = 24 * time.Hour
	}
	start, err1 := time.Parse(time.RFC3339, u.Start)
	end, err2 := time.Parse(time.RFC3339, u.End)
	if err1 != nil || err2 != nil || !end.After(start) {
		c.Empty = true
		return c
	}
	first := start.UTC().Truncate(step)
	n := int(math.Ceil(float64(end.Sub(first)) / float64(step)))
	if n > maxBuckets {
		first = end.Add(-maxBuckets * step).Truncate(step)
		n = maxBuckets
	}
	if n < 1 {
		n = 1
	}
	byStart := make(map[int64]usageBucket, len(u.Series))
	var peak int64
	for _, b := range u.Series {
		t, err := time.Parse(time.RFC3339, b.Start)
		if err != nil {
			continue
		}
		byStart[t.Unix()] = b
		peak = max(peak, b.Total)
	}
	c.Empty = len(u.Series) == 0
	top := niceCeil(peak)
	plotW := float64(chartW - plotLeft - plotRight)
	plotH := float64(chartH - plotTop - plotBottom)
	baseY := float64(plotTop) + plotH
	slot := plotW / float64(n)
	barW := math.Max(slot*0.8, 0.5)
	c.AxisX1, c.AxisX2, c.AxisY = num(plotLeft), num(plotLeft+plotW), num(baseY)
	for _, v := range []int64{0, top / 2, top} {
		if v == 0 && top == 1 {
			continue
		}
		y := baseY - plotH*float64(v)/float64(top)
		c.YTicks = append(c.YTicks, chartTick{X: num(plotLeft - 6), Y: num(y), Label: strconv.FormatInt(v, 10)})
	}
	labelEvery := max(1, n/6)
	if step == time.Hour {
		labelEvery = 12
	}
	legend := map[string]int64{}
	for i := range n {
		t := first.Add(time.Duration(i) * step)
		x := plotLeft + slot*float64(i) + (slot-barW)/2
		if i%labelEvery == 0 && float64(i) < float64(n)*0.9 { // none so close to the end that it is cut off
			layout := "Jan 2"
			if step == time.Hour {
				layout = "Jan 2 15:04"
			}
			c.XTicks = append(c.XTicks, chartTick{X: num(plotLeft + slot*float64(i)), Y: num(baseY + 16), Label: t.Format(layout)})
		}
		b, ok := byStart[t.Unix()]
		if !ok || b.Total <= 0 {
			continue
		}
		bar := chartBar{Label: barLabel(t, step, b)}
		y := baseY
		for _, code := range stackWithOther {
			var v int64
			class := codeClass(code)
			if code == "" { // counts under codes the dashboard does not know
				for k, n := range b.Counts {
					if !knownCodes[k] {
						v += n
					}
				}
			} else {
				v = b.Counts[code]
			}
			if v <= 0 {
				continue
			}
			legend[code] += v
			h := plotH * float64(v) / float64(top)
			y -= h
			bar.Segs = append(bar.Segs, chartSeg{X: num(x), Y: num(y), W: num(barW), H: num(h), Class: class})
		}
		c.Bars = append(c.Bars, bar)
	}
	for _, code := range stackWithOther {
		if legend[code] > 0 {
			name := code
			if name == "" {
				name = "other"
			}
			c.Legend = append(c.Legend, legendItem{Code: name, Class: codeClass(code), Count: legend[code]})
		}
	}
	return c
}

func barLabel(t time.Time, step time.Duration, b usageBucket) string {
	when := t.Format("2006-01-02")
	if step == time.Hour {
		when = t.Format("2006-01-02 15:04") + " UTC"
	}
	s := fmt.Sprintf("%s: %d", when, b.Total)
	for _, code := range stackOrder {
		if n := b.Counts[code]; n > 0 {
			s += fmt.Sprintf(", %s %d", code, n)
		}
	}
	return s
}

// hbarData is a horizontal bar of counts by outcome, scaled to of.
type hbarData struct {
	Segs []chartSeg
}

// hbar is a bar of counts (by code) out of the largest total in its table.
func hbar(counts map[string]int64, of int64) hbarData {
	var d hbarData
	if of <= 0 {
		return d
	}
	x := 0.0
	for _, code := range stackOrder {
		v := counts[code]
		if v <= 0 {
			continue
		}
		w := 100 * float64(v) / float64(of)
		d.Segs = append(d.Segs, chartSeg{X: num(x), Y: "0", W: num(w), H: "10", Class: codeClass(code)})
		x += w
	}
	return d
}
