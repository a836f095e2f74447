package usagestats

import (
	"fmt"
	"strings"
)

// Tag limits. A tag is name=value; a name is 1 to MaxTagNameLen bytes of a-z, 0-9, '_',
// '.' and '-'; a value is 1 to MaxTagValueLen bytes of printable ASCII (0x21 to 0x7E)
// other than '='. So a route ("/orders/{id}") is a valid value, and a tag never holds
// spaces, control characters, non-ASCII or a second '='.
const (
	MaxTags        = 8
	MaxTagNameLen  = 64
	MaxTagValueLen = 128
)

// Other is the value (and, past MaxTagNames, the name) overflowing tags are counted under.
const Other = "other"

// Tag is one name=value label a verify carries.
type Tag struct {
	Name  string
	Value string
}

// String returns name=value.
func (t Tag) String() string { return t.Name + "=" + t.Value }

// TagError names a tag that was refused and why.
type TagError struct {
	// Tag is the offending tag as given (truncated in Error).
	Tag    string
	Reason string
}

func (e *TagError) Error() string { return fmt.Sprintf("invalid tag %.80q: %s", e.Tag, e.Reason) }

// ParseTag reads name=value and validates it.
func ParseTag(s string) (Tag, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return Tag{}, &TagError{Tag: s, Reason: "must be name=value"}
	}
	t := Tag{Name: name, Value: value}
	if err := t.Validate(); err != nil {
		return Tag{}, err
	}
	return t, nil
}

// ParseTags reads and validates a verify's tags.
func ParseTags(ss []string) ([]Tag, error) {
	if len(ss) > MaxTags {
		return nil, fmt.Errorf("at most %d tags are allowed, not %d", MaxTags, len(ss))
	}
	tags := make([]Tag, 0, len(ss))
	for _, s := range ss {
		t, err := ParseTag(s)
		if err != nil {
			return nil, err
		}
		tags = append(tags, t)
	}
	if err := ValidateTags(tags); err != nil {
		return nil, err
	}
	return tags, nil
}

// Validate checks t's name and value.
func (t Tag) Validate() error {
	switch {
	case t.Name == "":
		return &TagError{Tag: t.String(), Reason: "empty name"}
	case len(t.Name) > MaxTagNameLen:
		return &TagError{Tag: t.String(), Reason: fmt.Sprintf("name longer than %d bytes", MaxTagNameLen)}
	case t.Value == "":
		return &TagError{Tag: t.String(), Reason: "empty value"}
	case len(t.Value) > MaxTagValueLen:
		return &TagError{Tag: t.String(), Reason: fmt.Sprintf("value longer than %d bytes", MaxTagValueLen)}
	}
	for i := 0; i < len(t.Name); i++ {
		if c := t.Name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return &TagError{Tag: t.String(), Reason: fmt.Sprintf("name byte %q is not one of a-z 0-9 _ . -", c)}
		}
	}
	for i := 0; i < len(t.Value); i++ {
		if c := t.Value[i]; c < 0x21 || c > 0x7e || c == '=' {
			return &TagError{Tag: t.String(), Reason: fmt.Sprintf("value byte %q is not printable ASCII without space or '='", c)}
		}
	}
	return nil
}

// ValidateTags checks a verify's tags: at most MaxTags, each valid, no name twice.
func ValidateTags(tags []Tag) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("at most %d tags are allowed, not %d", MaxTags, len(tags))
	}
	for i, t := range tags {
		if err := t.Validate(); err != nil {
			return err
		}
		for _, u := range tags[:i] {
			if u.Name == t.Name {
				return &TagError{Tag: t.String(), Reason: "name given twice"}
			}
		}
	}
	return nil
}

// TagCount is the outcomes counted under one tag.
type TagCount struct {
	Tag
	Counts Counts
}

// TagDay is the tags counted in one UTC day, sorted by name then value.
type TagDay struct {
	Start int64 // Unix seconds of the day's start
	Tags  []TagCount
}

// add counts c under t in d, folding t into name=other or other=other when the day's
// bounds are reached (see Config). It keeps d.Tags sorted and copies t's strings when
// it stores them, so a caller's request buffer is never retained.
func (d *TagDay) add(t Tag, c *Counts, cfg *Config) {
	names, pairs, nameSeen := 0, 0, false
	for i := range d.Tags {
		e := &d.Tags[i]
		if e.Tag == t {
			e.Counts.Add(c)
			return
		}
		if i == 0 || d.Tags[i-1].Name != e.Name {
			names++
		}
		if e.Value != Other {
			pairs++
		}
		if e.Name == t.Name {
			nameSeen = true
		}
	}
	if !nameSeen && names >= cfg.MaxTagNames {
		t = Tag{Name: Other, Value: Other}
	} else if t.Value != Other && pairs >= cfg.MaxTagValues {
		t.Value = Other
	}
	i := 0
	for ; i < len(d.Tags); i++ {
		e := &d.Tags[i]
		if e.Tag == t {
			e.Counts.Add(c)
			return
		}
		if e.Name > t.Name || e.Name == t.Name && e.Value > t.Value {
			break
		}
	}
	d.Tags = append(d.Tags, TagCount{})
	copy(d.Tags[i+1:], d.Tags[i:])
	d.Tags[i] = TagCount{Tag: Tag{Name: strings.Clone(t.Name), Value: strings.Clone(t.Value)}, Counts: *c}
}

// sub subtracts o's counts from d's matching tags, dropping tags that reach zero.
func (d *TagDay) sub(o *TagDay) {
	for j := range o.Tags {
		for i := range d.Tags {
			if d.Tags[i].Tag == o.Tags[j].Tag {
				d.Tags[i].Counts.sub(&o.Tags[j].Counts)
				break
			}
		}
	}
	d.Tags = deleteZero(d.Tags, func(t *TagCount) bool { return t.Counts.IsZero() })
}

// tagDay returns the day starting at start in days (sorted, ascending), inserting it
// if missing.
func tagDay(days *[]TagDay, start int64) *TagDay {
	s := *days
	i := len(s)
	for i > 0 && s[i-1].Start >= start {
		if s[i-1].Start == start {
			return &s[i-1]
		}
		i--
	}
	s = append(s, TagDay{})
	copy(s[i+1:], s[i:])
	s[i] = TagDay{Start: start}
	*days = s
	return &s[i]
}

// deleteZero removes the elements of s for which zero says true, in place.
func deleteZero[T any](s []T, zero func(*T) bool) []T {
	n := 0
	for i := range s {
		if !zero(&s[i]) {
			s[n] = s[i]
			n++
		}
	}
	clear(s[n:])
	return s[:n]
}
