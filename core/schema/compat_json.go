package schema

import (
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// JSON Schema compatibility: can a consumer validating with the reader
// schema accept every document a producer validating with the writer schema
// produces? The rules are the ones Confluent documents for JSON Schema
// (open, closed and partially open content models; the rule names in
// messages are Confluent's difference types), ported from Karapace's
// checks (Aiven-Open/karapace src/karapace/core/compatibility/jsonschema/
// checks.py, Apache-2.0) and adjusted where its checks were not sound:
//
//   - `not` compares the negated schemas the other way round (a reader's
//     `not` that matches more rejects more).
//   - A reader that accepts everything ({} or true) reads any writer, and a
//     writer that produces nothing (false) is read by any reader; Karapace
//     treats {} as an object schema.
//   - Sibling keywords of allOf/anyOf/oneOf are checked too, and allOf on
//     either side is read as a conjunction, anyOf/oneOf as a disjunction
//     (every writer alternative must be readable), instead of only counting
//     matched subschemas.
//   - `required` is the draft-4+ array; a property that became required is
//     compatible only when the reader gives it a default (Confluent's
//     REQUIRED_PROPERTY_WITH_DEFAULT_ADDED).
//   - dependencies compare in the reader's direction (a reader requiring
//     more is incompatible).
//
// Keywords the check cannot reason about (unevaluatedProperties,
// unevaluatedItems, $dynamicRef, $recursiveRef) make any difference
// incompatible (fail closed, as Karapace does); an unchanged schema is
// always compatible. `format` and annotations are not compared; patterns
// compare as text (a changed pattern is incompatible even if it accepts
// more).
//
// The check runs over the compiled schemas of santhosh-tekuri/jsonschema,
// so $refs (local and to referenced schemas) are already resolved; a
// recursive schema is compared coinductively (a pair met again on the path
// is assumed compatible).

// incompat is one reason a reader cannot read a writer.
type incompat struct {
	rule string // Confluent's difference type, e.g. PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL
	loc  string // JSON pointer into the reader schema
	msg  string
}

func (i incompat) String() string { return i.rule + " at " + i.loc + ": " + i.msg }

// maxJSONSteps bounds the comparisons one check makes: anyOf against anyOf
// compares every pair, recursively, and a hostile pair of schemas could
// make that exponential. Past it the check fails closed.
const maxJSONSteps = 200000

// jsonCanRead returns why reader cannot read what writer produces; nil
// means compatible.
func jsonCanRead(reader, writer *jsonschema.Schema) []incompat {
	c := &jsonChecker{onPath: map[[2]*jsonschema.Schema]bool{}, synth: map[synthKey]*jsonschema.Schema{}}
	return c.compat(reader, writer, "#")
}

type jsonChecker struct {
	onPath map[[2]*jsonschema.Schema]bool
	synth  map[synthKey]*jsonschema.Schema
	steps  int
}

// synthKey names a schema the checker derives from compiled ones, so the
// same derivation yields the same pointer and recursion through it is
// still recognised.
type synthKey struct {
	a, b *jsonschema.Schema
	op   int
}

const (
	opRefSiblings = iota
	opWithoutAllOf
	opWithoutAlts
	opMerge
)

var (
	falseBool   = false
	falseSchema = &jsonschema.Schema{Bool: &falseBool}
)

func (c *jsonChecker) derived(k synthKey, build func() *jsonschema.Schema) *jsonschema.Schema {
	if s, ok := c.synth[k]; ok {
		return s
	}
	s := build()
	c.synth[k] = s
	return s
}

// norm follows $ref. A $ref with sibling keywords (2019-09 and later)
// means both apply: it becomes allOf [target, siblings].
func (c *jsonChecker) norm(s *jsonschema.Schema) *jsonschema.Schema {
	for i := 0; s != nil && s.Ref != nil && i < maxDepth; i++ {
		rest := *s
		rest.Ref = nil
		if !hasAssertions(&rest) {
			s = s.Ref
			continue
		}
		orig := s
		return c.derived(synthKey{a: orig, op: opRefSiblings}, func() *jsonschema.Schema {
			d := rest
			d.AllOf = append([]*jsonschema.Schema{orig.Ref}, orig.AllOf...)
			return &d
		})
	}
	return s
}

func isFalse(s *jsonschema.Schema) bool { return s != nil && s.Bool != nil && !*s.Bool }

// acceptsAll reports whether s (normalized) accepts every document: absent,
// true, or only annotations.
func acceptsAll(s *jsonschema.Schema) bool {
	return s == nil || (s.Bool != nil && *s.Bool) || (s.Bool == nil && !hasAssertions(s))
}

// hasAssertions reports whether s constrains documents at all.
func hasAssertions(s *jsonschema.Schema) bool {
	return s.Bool != nil || s.Ref != nil || s.RecursiveRef != nil || s.DynamicRef != nil ||
		s.Types != nil || s.Enum != nil || s.Const != nil || s.Not != nil ||
		len(s.AllOf) > 0 || len(s.AnyOf) > 0 || len(s.OneOf) > 0 || s.If != nil ||
		s.MaxProperties != nil || s.MinProperties != nil || len(s.Required) > 0 || s.PropertyNames != nil ||
		len(s.Properties) > 0 || len(s.PatternProperties) > 0 || s.AdditionalProperties != nil ||
		len(s.Dependencies) > 0 || len(s.DependentRequired) > 0 || len(s.DependentSchemas) > 0 ||
		s.UnevaluatedProperties != nil || s.MinItems != nil || s.MaxItems != nil || s.UniqueItems ||
		s.Contains != nil || s.Items != nil || s.AdditionalItems != nil || len(s.PrefixItems) > 0 ||
		s.Items2020 != nil || s.UnevaluatedItems != nil || s.MinLength != nil || s.MaxLength != nil ||
		s.Pattern != nil || s.Maximum != nil || s.Minimum != nil || s.ExclusiveMaximum != nil ||
		s.ExclusiveMinimum != nil || s.MultipleOf != nil
}

func (c *jsonChecker) compat(r, w *jsonschema.Schema, loc string) []incompat {
	c.steps++
	if c.steps > maxJSONSteps {
		return []incompat{{"SCHEMA_TOO_COMPLEX", loc, fmt.Sprintf("comparison stopped after %d steps; the schemas are too complex to compare (use compatibility NONE for this subject)", maxJSONSteps)}}
	}
	r, w = c.norm(r), c.norm(w)
	switch {
	case isFalse(w):
		return nil // the writer produces nothing
	case acceptsAll(r):
		return nil
	case isFalse(r):
		return []incompat{{"SCHEMA_REMOVED", loc, "the reader schema is false and rejects every document"}}
	}
	pair := [2]*jsonschema.Schema{r, w}
	if c.onPath[pair] {
		return nil
	}
	c.onPath[pair] = true
	defer delete(c.onPath, pair)

	if u := unsupported(r); u != "" {
		return []incompat{{"UNSUPPORTED_KEYWORD", loc, "the reader schema uses " + u + ", which the compatibility check cannot compare; only an unchanged schema is compatible"}}
	}
	if u := unsupported(w); u != "" {
		return []incompat{{"UNSUPPORTED_KEYWORD", loc, "the writer schema uses " + u + ", which the compatibility check cannot compare; only an unchanged schema is compatible"}}
	}

	var out []incompat
	// The reader's allOf: the writer must satisfy every conjunct.
	if len(r.AllOf) > 0 {
		for i, sub := range r.AllOf {
			out = append(out, c.compat(sub, w, fmt.Sprintf("%s/allOf/%d", loc, i))...)
		}
		rr := r
		r = c.derived(synthKey{a: rr, op: opWithoutAllOf}, func() *jsonschema.Schema { d := *rr; d.AllOf = nil; return &d })
		if acceptsAll(r) {
			return out
		}
	}
	// The writer's allOf: what it produces satisfies every conjunct; read
	// as one schema merging them (conservatively: on a clash the writer
	// keeps the looser value).
	if len(w.AllOf) > 0 {
		w = c.mergeAllOf(w)
	}
	if len(r.AnyOf) > 0 && len(r.OneOf) > 0 || len(w.AnyOf) > 0 && len(w.OneOf) > 0 {
		return append(out, incompat{"UNSUPPORTED_KEYWORD", loc, "anyOf and oneOf in the same schema are not compared; only an unchanged schema is compatible"})
	}
	rAlts, rKind := alternatives(r)
	wAlts, wKind := alternatives(w)
	if len(wAlts) > 0 {
		wBase := c.withoutAlts(w)
		merged := make([]*jsonschema.Schema, len(wAlts))
		for i, a := range wAlts {
			merged[i] = c.merge(c.norm(a), wBase)
		}
		if len(rAlts) == 0 {
			for i, m := range merged {
				out = append(out, c.compat(r, m, fmt.Sprintf("%s/%s/%d", loc, wKind, i))...)
			}
			return out
		}
		return append(out, c.altsAgainstAlts(r, rAlts, rKind, merged, wKind, loc)...)
	}
	if len(rAlts) > 0 {
		base := c.withoutAlts(r)
		out = append(out, c.compat(base, w, loc)...)
		for _, a := range rAlts {
			if len(c.compat(a, w, loc)) == 0 {
				return out
			}
		}
		return append(out, incompat{"SUM_TYPE_NARROWED", loc + "/" + rKind, "no subschema of the reader's " + rKind + " accepts what the writer produces"})
	}
	return append(out, c.base(r, w, loc)...)
}

// unsupported names a keyword of s the check cannot reason about.
func unsupported(s *jsonschema.Schema) string {
	switch {
	case s.UnevaluatedProperties != nil:
		return "unevaluatedProperties"
	case s.UnevaluatedItems != nil:
		return "unevaluatedItems"
	case s.DynamicRef != nil:
		return "$dynamicRef"
	case s.RecursiveRef != nil:
		return "$recursiveRef"
	}
	return ""
}

func alternatives(s *jsonschema.Schema) ([]*jsonschema.Schema, string) {
	if len(s.AnyOf) > 0 {
		return s.AnyOf, "anyOf"
	}
	if len(s.OneOf) > 0 {
		return s.OneOf, "oneOf"
	}
	return nil, ""
}

func (c *jsonChecker) withoutAlts(s *jsonschema.Schema) *jsonschema.Schema {
	return c.derived(synthKey{a: s, op: opWithoutAlts}, func() *jsonschema.Schema {
		d := *s
		d.AnyOf, d.OneOf = nil, nil
		return &d
	})
}

// altsAgainstAlts: every writer alternative must be readable by a reader
// alternative (and by the reader's sibling keywords). A reader oneOf must
// match writer alternatives one to one (exclusivity), and a writer anyOf
// under a reader oneOf is a changed combination, as in Confluent.
func (c *jsonChecker) altsAgainstAlts(r *jsonschema.Schema, rAlts []*jsonschema.Schema, rKind string, wAlts []*jsonschema.Schema, wKind, loc string) []incompat {
	var out []incompat
	at := loc + "/" + rKind
	if rKind == "oneOf" && wKind == "anyOf" {
		return []incompat{{"COMBINED_TYPE_CHANGED", at, "the writer's anyOf became oneOf in the reader"}}
	}
	if rKind == "oneOf" && len(wAlts) > len(rAlts) {
		return []incompat{{"SUM_TYPE_NARROWED", at, fmt.Sprintf("oneOf narrowed from %d to %d subschemas", len(wAlts), len(rAlts))}}
	}
	base := c.withoutAlts(r)
	edges := make([][]int, len(wAlts))
	for i, wa := range wAlts {
		out = append(out, c.compat(base, wa, loc)...)
		for j, ra := range rAlts {
			if len(c.compat(ra, wa, fmt.Sprintf("%s/%d", at, j))) == 0 {
				edges[i] = append(edges[i], j)
			}
		}
		if len(edges[i]) == 0 {
			out = append(out, incompat{"SUM_TYPE_NARROWED", at, fmt.Sprintf("the writer's %s/%d is accepted by no subschema of the reader's %s", wKind, i, rKind)})
		}
	}
	if len(out) == 0 && rKind == "oneOf" && maxMatching(edges, len(rAlts)) < len(wAlts) {
		out = append(out, incompat{"COMBINED_TYPE_SUBSCHEMAS_CHANGED", at, "the writer's subschemas do not map one to one onto the reader's oneOf"})
	}
	return out
}

// maxMatching is the size of a maximum bipartite matching (Kuhn's
// augmenting paths); edges[i] lists the right nodes left node i may take.
func maxMatching(edges [][]int, right int) int {
	owner := make([]int, right)
	for i := range owner {
		owner[i] = -1
	}
	var try func(i int, seen []bool) bool
	try = func(i int, seen []bool) bool {
		for _, j := range edges[i] {
			if seen[j] {
				continue
			}
			seen[j] = true
			if owner[j] < 0 || try(owner[j], seen) {
				owner[j] = i
				return true
			}
		}
		return false
	}
	n := 0
	for i := range edges {
		if try(i, make([]bool, right)) {
			n++
		}
	}
	return n
}

// mergeAllOf folds a writer's allOf conjuncts into one schema.
func (c *jsonChecker) mergeAllOf(w *jsonschema.Schema) *jsonschema.Schema {
	return c.derived(synthKey{a: w, op: opWithoutAllOf}, func() *jsonschema.Schema {
		d := *w
		d.AllOf = nil
		m := &d
		for _, sub := range w.AllOf {
			m = mergeInto(m, c.norm(sub))
		}
		return m
	})
}

func (c *jsonChecker) merge(alt, base *jsonschema.Schema) *jsonschema.Schema {
	return c.derived(synthKey{a: alt, b: base, op: opMerge}, func() *jsonschema.Schema { return mergeInto(alt, base) })
}

// mergeInto returns a copy of dst with what src adds: types intersect,
// maps and required lists unite, other keywords dst lacks come from src.
// Used on the writer side only, where keeping the looser of two clashing
// values errs towards "incompatible".
func mergeInto(dst, src *jsonschema.Schema) *jsonschema.Schema {
	if src == nil || acceptsAll(src) {
		return dst
	}
	if isFalse(src) || isFalse(dst) {
		return falseSchema
	}
	d := *dst
	if d.Bool != nil { // true
		d.Bool = nil
	}
	switch {
	case d.Types == nil:
		d.Types = src.Types
	case src.Types != nil:
		t := jsonschema.Types(int(*d.Types) & int(*src.Types))
		d.Types = &t
	}
	fill := func(p **jsonschema.Schema, q *jsonschema.Schema) {
		if *p == nil {
			*p = q
		}
	}
	if d.Enum == nil {
		d.Enum = src.Enum
	}
	if d.Const == nil {
		d.Const = src.Const
	}
	fill(&d.Not, src.Not)
	if len(d.AnyOf) == 0 && len(d.OneOf) == 0 {
		d.AnyOf, d.OneOf = src.AnyOf, src.OneOf
	}
	if d.If == nil {
		d.If, d.Then, d.Else = src.If, src.Then, src.Else
	}
	d.Properties = uniteSchemas(d.Properties, src.Properties)
	d.PatternProperties = uniteSchemas(d.PatternProperties, src.PatternProperties)
	d.DependentSchemas = uniteSchemas(d.DependentSchemas, src.DependentSchemas)
	d.DependentRequired = uniteMaps(d.DependentRequired, src.DependentRequired)
	d.Dependencies = uniteMaps(d.Dependencies, src.Dependencies)
	if len(src.Required) > 0 {
		req := slices.Clone(d.Required)
		for _, r := range src.Required {
			if !slices.Contains(req, r) {
				req = append(req, r)
			}
		}
		d.Required = req
	}
	if d.AdditionalProperties == nil {
		d.AdditionalProperties = src.AdditionalProperties
	}
	fill(&d.PropertyNames, src.PropertyNames)
	fill(&d.Contains, src.Contains)
	if d.Items == nil && len(d.PrefixItems) == 0 && d.Items2020 == nil {
		d.Items, d.AdditionalItems, d.PrefixItems, d.Items2020 = src.Items, src.AdditionalItems, src.PrefixItems, src.Items2020
	}
	d.UniqueItems = d.UniqueItems || src.UniqueItems
	for _, p := range []struct{ dst, src **int }{
		{&d.MaxProperties, &src.MaxProperties}, {&d.MinProperties, &src.MinProperties},
		{&d.MinItems, &src.MinItems}, {&d.MaxItems, &src.MaxItems},
		{&d.MinLength, &src.MinLength}, {&d.MaxLength, &src.MaxLength},
	} {
		if *p.dst == nil {
			*p.dst = *p.src
		}
	}
	if d.Pattern == nil {
		d.Pattern = src.Pattern
	}
	for _, p := range []struct{ dst, src **big.Rat }{
		{&d.Maximum, &src.Maximum}, {&d.Minimum, &src.Minimum},
		{&d.ExclusiveMaximum, &src.ExclusiveMaximum}, {&d.ExclusiveMinimum, &src.ExclusiveMinimum},
		{&d.MultipleOf, &src.MultipleOf},
	} {
		if *p.dst == nil {
			*p.dst = *p.src
		}
	}
	return &d
}

// uniteSchemas unites two maps of subschemas; a key in both gets allOf
// of the two (a writer's value satisfies both).
func uniteSchemas[K comparable](a, b map[K]*jsonschema.Schema) map[K]*jsonschema.Schema {
	m := uniteMaps(a, b)
	for k, bs := range b {
		if as, ok := a[k]; ok && as != bs {
			m[k] = &jsonschema.Schema{AllOf: []*jsonschema.Schema{as, bs}}
		}
	}
	return m
}

func uniteMaps[K comparable, V any](a, b map[K]V) map[K]V {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	m := make(map[K]V, len(a)+len(b))
	for k, v := range b {
		m[k] = v
	}
	for k, v := range a {
		m[k] = v
	}
	return m
}

// JSON types as a bit set.
type jtypes uint8

const (
	tNull jtypes = 1 << iota
	tBoolean
	tObject
	tArray
	tNumber
	tInteger
	tString
	tAll = tNull | tBoolean | tObject | tArray | tNumber | tInteger | tString
)

var jtypeNames = []struct {
	t    jtypes
	name string
}{{tNull, "null"}, {tBoolean, "boolean"}, {tObject, "object"}, {tArray, "array"}, {tNumber, "number"}, {tInteger, "integer"}, {tString, "string"}}

func (t jtypes) String() string {
	var n []string
	for _, tn := range jtypeNames {
		if t&tn.t != 0 {
			n = append(n, tn.name)
		}
	}
	return strings.Join(n, ", ")
}

func typesOf(tt *jsonschema.Types) jtypes {
	if tt == nil {
		return tAll
	}
	var t jtypes
	for _, s := range tt.ToStrings() {
		for _, tn := range jtypeNames {
			if tn.name == s {
				t |= tn.t
			}
		}
	}
	return t
}

func typeOfValue(v any) jtypes {
	switch v := v.(type) {
	case nil:
		return tNull
	case bool:
		return tBoolean
	case map[string]any:
		return tObject
	case []any:
		return tArray
	case string:
		return tString
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return tInteger | tNumber
		}
		return tNumber
	case float64, int, int64:
		return tNumber | tInteger
	}
	return tAll
}

// enumValues is s's enum (or const as a one-value enum); nil if neither.
func enumValues(s *jsonschema.Schema) []any {
	if s.Const != nil {
		return []any{*s.Const}
	}
	if s.Enum != nil {
		return s.Enum.Values
	}
	return nil
}

// produced is the set of types the writer may produce: its declared types,
// narrowed to those of its enum values. integer is a kind of number, so a
// writer declaring number may produce integers.
func produced(w *jsonschema.Schema) jtypes {
	t := typesOf(w.Types)
	if t&tNumber != 0 {
		t |= tInteger
	}
	if vals := enumValues(w); vals != nil {
		var et jtypes
		for _, v := range vals {
			et |= typeOfValue(v)
		}
		t &= et
	}
	return t
}

// accepted is the set of types the reader accepts.
func accepted(r *jsonschema.Schema) jtypes {
	t := typesOf(r.Types)
	if t&tNumber != 0 {
		t |= tInteger
	}
	return t
}

func canonicalJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// base compares the keywords other than the combinators.
func (c *jsonChecker) base(r, w *jsonschema.Schema, loc string) []incompat {
	var out []incompat
	add := func(rule, l, format string, args ...any) {
		out = append(out, incompat{rule, l, fmt.Sprintf(format, args...)})
	}
	wt, rt := produced(w), accepted(r)
	if missing := wt &^ rt; missing != 0 {
		if missing == tNumber && wt&tInteger != 0 && rt&tInteger != 0 {
			add("TYPE_NARROWED", loc, "the writer produces numbers, the reader accepts only integers")
		} else {
			add("TYPE_CHANGED", loc, "the writer may produce %s, which the reader's type [%s] does not accept", missing, rt)
		}
	}
	both := wt & rt
	if both == 0 {
		return out
	}

	if rv := enumValues(r); rv != nil {
		wv := enumValues(w)
		if wv == nil {
			add("ENUM_ARRAY_ADDED", loc, "the reader only accepts %s; the writer had no enum", canonicalJSON(rv))
		} else {
			have := map[string]bool{}
			for _, v := range rv {
				have[canonicalJSON(v)] = true
			}
			var gone []string
			for _, v := range wv {
				if s := canonicalJSON(v); !have[s] {
					gone = append(gone, s)
				}
			}
			if len(gone) > 0 {
				add("ENUM_ARRAY_NARROWED", loc, "the reader no longer accepts %s", strings.Join(gone, ", "))
			}
		}
	}

	if r.Not != nil {
		if w.Not == nil {
			add("NOT_TYPE_ADDED", loc+"/not", "the reader added a not, rejecting values the writer may produce")
		} else if len(c.compat(w.Not, r.Not, loc+"/not")) > 0 {
			add("NOT_TYPE_EXTENDED", loc+"/not", "the reader's not matches (and rejects) values the writer's not did not")
		}
	}

	if r.If != nil {
		switch {
		case w.If == nil:
			add("CONDITIONAL_ADDED", loc+"/if", "the reader added if/then/else")
		case len(c.compat(r.If, w.If, loc+"/if")) > 0 || len(c.compat(w.If, r.If, loc+"/if")) > 0:
			add("CONDITIONAL_CHANGED", loc+"/if", "the reader's if condition differs from the writer's")
		default:
			out = append(out, c.compat(r.Then, w.Then, loc+"/then")...)
			out = append(out, c.compat(r.Else, w.Else, loc+"/else")...)
		}
	}

	if both&tString != 0 {
		out = append(out, stringRules(r, w, loc)...)
	}
	if both&(tNumber|tInteger) != 0 {
		out = append(out, numberRules(r, w, loc)...)
	}
	if both&tObject != 0 {
		out = append(out, c.objectRules(r, w, loc)...)
	}
	if both&tArray != 0 {
		out = append(out, c.arrayRules(r, w, loc)...)
	}
	return out
}

// intRule is a bound that must not tighten: an upper bound (max) must
// not decrease, a lower bound must not increase, and neither may appear.
func intRule(out *[]incompat, name, loc string, rv, wv *int, upper bool) {
	switch {
	case rv == nil:
	case wv == nil:
		*out = append(*out, incompat{strings.ToUpper(camelToSnake(name)) + "_ADDED", loc, fmt.Sprintf("the reader added %s %d", name, *rv)})
	case upper && *rv < *wv:
		*out = append(*out, incompat{strings.ToUpper(camelToSnake(name)) + "_DECREASED", loc, fmt.Sprintf("%s decreased from %d to %d", name, *wv, *rv)})
	case !upper && *rv > *wv:
		*out = append(*out, incompat{strings.ToUpper(camelToSnake(name)) + "_INCREASED", loc, fmt.Sprintf("%s increased from %d to %d", name, *wv, *rv)})
	}
}

func ratRule(out *[]incompat, name, loc string, rv, wv *big.Rat, upper bool) {
	switch {
	case rv == nil:
	case wv == nil:
		*out = append(*out, incompat{strings.ToUpper(camelToSnake(name)) + "_ADDED", loc, fmt.Sprintf("the reader added %s %s", name, rv.RatString())})
	case upper && rv.Cmp(wv) < 0:
		*out = append(*out, incompat{strings.ToUpper(camelToSnake(name)) + "_DECREASED", loc, fmt.Sprintf("%s decreased from %s to %s", name, wv.RatString(), rv.RatString())})
	case !upper && rv.Cmp(wv) > 0:
		*out = append(*out, incompat{strings.ToUpper(camelToSnake(name)) + "_INCREASED", loc, fmt.Sprintf("%s increased from %s to %s", name, wv.RatString(), rv.RatString())})
	}
}

func camelToSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func stringRules(r, w *jsonschema.Schema, loc string) []incompat {
	var out []incompat
	intRule(&out, "maxLength", loc, r.MaxLength, w.MaxLength, true)
	intRule(&out, "minLength", loc, r.MinLength, w.MinLength, false)
	switch {
	case r.Pattern == nil:
	case w.Pattern == nil:
		out = append(out, incompat{"PATTERN_ADDED", loc, "the reader added pattern " + r.Pattern.String()})
	case r.Pattern.String() != w.Pattern.String():
		out = append(out, incompat{"PATTERN_CHANGED", loc, fmt.Sprintf("pattern changed from %s to %s", w.Pattern, r.Pattern)})
	}
	return out
}

func numberRules(r, w *jsonschema.Schema, loc string) []incompat {
	var out []incompat
	ratRule(&out, "maximum", loc, r.Maximum, w.Maximum, true)
	ratRule(&out, "minimum", loc, r.Minimum, w.Minimum, false)
	ratRule(&out, "exclusiveMaximum", loc, r.ExclusiveMaximum, w.ExclusiveMaximum, true)
	ratRule(&out, "exclusiveMinimum", loc, r.ExclusiveMinimum, w.ExclusiveMinimum, false)
	switch {
	case r.MultipleOf == nil:
	case w.MultipleOf == nil:
		out = append(out, incompat{"MULTIPLE_OF_ADDED", loc, "the reader added multipleOf " + r.MultipleOf.RatString()})
	default:
		// Every multiple of the writer's must be a multiple of the reader's.
		q := new(big.Rat).Quo(w.MultipleOf, r.MultipleOf)
		if !q.IsInt() {
			out = append(out, incompat{"MULTIPLE_OF_CHANGED", loc, fmt.Sprintf("multipleOf changed from %s to %s, which does not divide it", w.MultipleOf.RatString(), r.MultipleOf.RatString())})
		}
	}
	return out
}

// covering returns the schema that governs property name in s when s does
// not list it: a matching patternProperties schema, else
// additionalProperties. nil means the property is unconstrained (open
// content model).
func covering(s *jsonschema.Schema, name string) *jsonschema.Schema {
	for re, ps := range s.PatternProperties {
		if re.MatchString(name) {
			return ps
		}
	}
	return additional(s.AdditionalProperties)
}

// additional maps additionalProperties/additionalItems (nil, bool or
// *Schema) to a schema: nil for absent or true.
func additional(v any) *jsonschema.Schema {
	switch v := v.(type) {
	case bool:
		if !v {
			return falseSchema
		}
	case *jsonschema.Schema:
		return v
	}
	return nil
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (c *jsonChecker) objectRules(r, w *jsonschema.Schema, loc string) []incompat {
	var out []incompat
	ploc := loc + "/properties"
	for _, name := range sortedKeys(r.Properties) {
		rp := r.Properties[name]
		l := ploc + "/" + pointerEscape(name)
		if wp, ok := w.Properties[name]; ok {
			out = append(out, c.compat(rp, wp, l)...)
			continue
		}
		cover := covering(w, name)
		switch {
		case cover == nil:
			if !acceptsAll(c.norm(rp)) {
				out = append(out, incompat{"PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", l, fmt.Sprintf("the reader constrains property %q, which the writer's open content model let hold any value", name)})
			}
		case isFalse(cover):
			// PROPERTY_ADDED_TO_CLOSED_CONTENT_MODEL: the writer never
			// produced it.
		default:
			if len(c.compat(rp, cover, l)) > 0 {
				out = append(out, incompat{"PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", l, fmt.Sprintf("property %q does not accept what the writer's patternProperties/additionalProperties allowed under that name", name)})
			}
		}
	}
	for _, name := range sortedKeys(w.Properties) {
		if _, ok := r.Properties[name]; ok {
			continue
		}
		l := ploc + "/" + pointerEscape(name)
		cover := covering(r, name)
		switch {
		case cover == nil:
			// PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL
		case isFalse(cover):
			out = append(out, incompat{"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", l, fmt.Sprintf("the reader's closed content model no longer accepts property %q", name)})
		default:
			if len(c.compat(cover, w.Properties[name], l)) > 0 {
				out = append(out, incompat{"PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", l, fmt.Sprintf("property %q is no longer listed and the reader's patternProperties/additionalProperties do not accept its values", name)})
			}
		}
	}
	for _, name := range r.Required {
		if slices.Contains(w.Required, name) {
			continue
		}
		if rp, ok := r.Properties[name]; ok && rp.Default != nil {
			continue // REQUIRED_PROPERTY_WITH_DEFAULT_ADDED
		}
		out = append(out, incompat{"REQUIRED_PROPERTY_ADDED", loc + "/required", fmt.Sprintf("property %q became required without a default", name)})
	}

	rAdd, wAdd := additional(r.AdditionalProperties), additional(w.AdditionalProperties)
	aloc := loc + "/additionalProperties"
	switch {
	case rAdd == nil:
	case wAdd == nil:
		out = append(out, incompat{"ADDITIONAL_PROPERTIES_NARROWED", aloc, "the reader restricts additional properties the writer allowed freely"})
	case isFalse(wAdd):
	case isFalse(rAdd):
		out = append(out, incompat{"ADDITIONAL_PROPERTIES_REMOVED", aloc, "the reader closed the content model the writer had partially open"})
	default:
		out = append(out, c.compat(rAdd, wAdd, aloc)...)
	}

	for re, rps := range r.PatternProperties {
		l := loc + "/patternProperties/" + pointerEscape(re.String())
		var wps *jsonschema.Schema
		found := false
		for wre, s := range w.PatternProperties {
			if wre.String() == re.String() {
				wps, found = s, true
			}
		}
		switch {
		case found:
			out = append(out, c.compat(rps, wps, l)...)
		case wAdd == nil:
			if !acceptsAll(c.norm(rps)) {
				out = append(out, incompat{"PATTERN_PROPERTIES_ADDED", l, "the reader constrains properties matching " + re.String() + ", which the writer let hold any value"})
			}
		case isFalse(wAdd):
		default:
			if len(c.compat(rps, wAdd, l)) > 0 {
				out = append(out, incompat{"PATTERN_PROPERTIES_ADDED", l, "properties matching " + re.String() + " do not accept what the writer's additionalProperties allowed"})
			}
		}
	}

	if r.PropertyNames != nil {
		if w.PropertyNames == nil {
			if !acceptsAll(c.norm(r.PropertyNames)) {
				out = append(out, incompat{"PROPERTY_NAMES_ADDED", loc + "/propertyNames", "the reader added propertyNames"})
			}
		} else {
			out = append(out, c.compat(r.PropertyNames, w.PropertyNames, loc+"/propertyNames")...)
		}
	}

	rDeps, rDepSchemas := dependencies(r)
	wDeps, wDepSchemas := dependencies(w)
	for _, name := range sortedKeys(rDeps) {
		l := loc + "/dependentRequired/" + pointerEscape(name)
		wd, ok := wDeps[name]
		if !ok {
			out = append(out, incompat{"DEPENDENCY_ARRAY_ADDED", l, fmt.Sprintf("the reader added a dependency of %q on %v", name, rDeps[name])})
			continue
		}
		for _, dep := range rDeps[name] {
			if !slices.Contains(wd, dep) {
				out = append(out, incompat{"DEPENDENCY_ARRAY_EXTENDED", l, fmt.Sprintf("%q now also depends on %q", name, dep)})
			}
		}
	}
	for _, name := range sortedKeys(rDepSchemas) {
		l := loc + "/dependentSchemas/" + pointerEscape(name)
		ws, ok := wDepSchemas[name]
		if !ok {
			out = append(out, incompat{"DEPENDENCY_SCHEMA_ADDED", l, fmt.Sprintf("the reader added a dependent schema for %q", name)})
			continue
		}
		out = append(out, c.compat(rDepSchemas[name], ws, l)...)
	}

	intRule(&out, "maxProperties", loc, r.MaxProperties, w.MaxProperties, true)
	intRule(&out, "minProperties", loc, r.MinProperties, w.MinProperties, false)
	return out
}

// dependencies splits draft-4..7 dependencies and 2019+ dependentRequired
// and dependentSchemas into property lists and schemas.
func dependencies(s *jsonschema.Schema) (map[string][]string, map[string]*jsonschema.Schema) {
	req := map[string][]string{}
	sch := map[string]*jsonschema.Schema{}
	for k, v := range s.Dependencies {
		switch v := v.(type) {
		case []string:
			req[k] = v
		case *jsonschema.Schema:
			sch[k] = v
		}
	}
	for k, v := range s.DependentRequired {
		req[k] = append(req[k], v...)
	}
	for k, v := range s.DependentSchemas {
		sch[k] = v
	}
	return req, sch
}

// itemsOf returns s's positional item schemas and the schema of the items
// after them (nil: unconstrained), across the draft-4..2019 form (items
// array + additionalItems, or items as one schema) and the 2020-12 form
// (prefixItems + items).
func itemsOf(s *jsonschema.Schema) (prefix []*jsonschema.Schema, rest *jsonschema.Schema) {
	if len(s.PrefixItems) > 0 || s.Items2020 != nil {
		return s.PrefixItems, s.Items2020
	}
	switch it := s.Items.(type) {
	case []*jsonschema.Schema:
		return it, additional(s.AdditionalItems)
	case *jsonschema.Schema:
		return nil, it
	}
	return nil, nil
}

func (c *jsonChecker) arrayRules(r, w *jsonschema.Schema, loc string) []incompat {
	var out []incompat
	rPre, rRest := itemsOf(r)
	wPre, wRest := itemsOf(w)
	n := max(len(rPre), len(wPre))
	at := func(pre []*jsonschema.Schema, rest *jsonschema.Schema, i int) *jsonschema.Schema {
		if i < len(pre) {
			return pre[i]
		}
		return rest
	}
	// Positions 0..n-1 one by one, then every later position at once.
	for i := 0; i <= n; i++ {
		rs, ws := at(rPre, rRest, i), at(wPre, wRest, i)
		l := fmt.Sprintf("%s/items/%d", loc, i)
		if i == n {
			l = loc + "/items"
		}
		if w.MaxItems != nil && *w.MaxItems <= i {
			break // the writer never produces an item here
		}
		rs, ws = c.norm(rs), c.norm(ws)
		switch {
		case isFalse(ws):
		case acceptsAll(rs):
		case isFalse(rs):
			out = append(out, incompat{"ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", l, "the reader no longer accepts items from here on"})
		case acceptsAll(ws):
			out = append(out, incompat{"ITEM_ADDED_TO_OPEN_CONTENT_MODEL", l, "the reader constrains items the writer left unconstrained"})
		default:
			out = append(out, c.compat(rs, ws, l)...)
		}
		if isFalse(ws) {
			break
		}
	}
	intRule(&out, "maxItems", loc, r.MaxItems, w.MaxItems, true)
	intRule(&out, "minItems", loc, r.MinItems, w.MinItems, false)
	if r.UniqueItems && !w.UniqueItems {
		out = append(out, incompat{"UNIQUE_ITEMS_ADDED", loc, "the reader requires unique items"})
	}
	if r.Contains != nil {
		if w.Contains == nil {
			out = append(out, incompat{"CONTAINS_ADDED", loc + "/contains", "the reader added contains"})
		} else {
			out = append(out, c.compat(r.Contains, w.Contains, loc+"/contains")...)
		}
	}
	return out
}
