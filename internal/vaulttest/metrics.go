//go:build unix

package vaulttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metrics is one scrape of a Prometheus text exposition: each sample's value by its
// series as written, "name" or `name{label="value",...}` (labels in the order the
// exporter wrote them; client_golang sorts them by name).
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text exposition format (version 0.0.4): comments
// and blank lines are skipped, a sample's timestamp is ignored. A line that is not a
// sample is an error naming its number.
func ParseMetrics(text string) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, rest, err := splitSeries(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", n, err)
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 || len(fields) > 2 {
			return nil, fmt.Errorf("metrics line %d: want a value (and a timestamp) after %s", n, series)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: value: %w", n, err)
		}
		m[series] = v
	}
	return m, sc.Err()
}

// splitSeries cuts a sample line into its series (name and labels) and the rest. Label
// values are quoted and may hold spaces, braces and escaped quotes.
func splitSeries(line string) (series, rest string, err error) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return "", "", errors.New("no value")
	}
	if i == 0 {
		return "", "", errors.New("no metric name")
	}
	if line[i] != '{' {
		return line[:i], line[i:], nil
	}
	inQuote := false
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case inQuote && c == '\\':
			j++ // the escaped byte
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return line[:j+1], line[j+1:], nil
		}
	}
	return "", "", errors.New("labels without a closing brace")
}

// Sum adds the samples of the family name, whatever their labels (0 if there are none).
func (m Metrics) Sum(name string) float64 {
	total := 0.0
	for series, v := range m {
		if series == name || strings.HasPrefix(series, name+"{") {
			total += v
		}
	}
	return total
}

// Metrics scrapes /metrics from the gateway's metrics listener (started with
// MetricsListener).
func (g *Gateway) Metrics(ctx context.Context) (Metrics, error) {
	if g.MetricsAddr == "" {
		return nil, fmt.Errorf("%s has no metrics listener", g.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.MetricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics answered %d: %.200s", g.Name, resp.StatusCode, b)
	}
	return ParseMetrics(string(b))
}
