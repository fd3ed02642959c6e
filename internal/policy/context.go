package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/bulkhead-ai/bulkhead/internal/label"
)

// maxDepth bounds the nesting of arguments converted to Cedar values.
const maxDepth = 32

// contextOf converts a call's JSON arguments into the Cedar context record,
// as documented at [Set.Authorize]; inexact reports whether a number in them
// is one Cedar cannot hold exactly (see exact).
// and the turn's label l under the reserved names (label.Reserved), which
// AuthorizeLabeled has refused among the arguments.
func contextOf(args map[string]any, l label.Label) (_ types.Record, inexact bool, _ error) {
	rm, err := recordMap(args, 0, &inexact, 2)
	if err != nil {
		return types.Record{}, false, fmt.Errorf("policy: argument %w", err)
	}
	rm[label.ContextIntegrity] = types.String(l.Integrity.String())
	rm[label.ContextConfidentiality] = types.String(l.Confidentiality.String())
	return types.NewRecord(rm), inexact, nil
}

func record(m map[string]any, depth int, inexact *bool) (types.Record, error) {
	rm, err := recordMap(m, depth, inexact, 0)
	if err != nil {
		return types.Record{}, err
	}
	return types.NewRecord(rm), nil
}

// recordMap converts m, leaving room for extra more attributes.
func recordMap(m map[string]any, depth int, inexact *bool, extra int) (types.RecordMap, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	rm := make(types.RecordMap, len(m)+extra)
	for k, v := range m {
		cv, ok, err := value(v, depth, inexact)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if ok {
			rm[types.String(k)] = cv
		}
	}
	return rm, nil
}

// value converts one JSON value; ok is false when it is to be omitted (nil).
func value(v any, depth int, inexact *bool) (_ types.Value, ok bool, _ error) {
	switch v := v.(type) {
	case nil:
		return nil, false, nil
	case string:
		return types.String(v), true, nil
	case bool:
		return types.Boolean(v), true, nil
	case float64:
		n, err := number(v, inexact)
		return n, err == nil, err
	case json.Number:
		if !strings.ContainsAny(string(v), "eE") {
			return exact(string(v), inexact), true, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, false, fmt.Errorf("number %q is out of range", string(v))
		}
		n, err := number(f, inexact)
		return n, err == nil, err
	case int:
		return types.Long(v), true, nil
	case int64:
		return types.Long(v), true, nil
	case []any:
		if depth+1 > maxDepth {
			return nil, false, fmt.Errorf("nested deeper than %d levels", maxDepth)
		}
		vals := make([]types.Value, 0, len(v))
		for i, e := range v {
			cv, ok, err := value(e, depth+1, inexact)
			if err != nil {
				return nil, false, fmt.Errorf("[%d]: %w", i, err)
			}
			if ok {
				vals = append(vals, cv)
			}
		}
		return types.NewSet(vals...), true, nil
	case map[string]any:
		r, err := record(v, depth+1, inexact)
		return r, err == nil, err
	}
	return nil, false, fmt.Errorf("value of type %T cannot be represented in Cedar", v)
}

// inexactNumber is the attribute of the record that stands for a number
// Cedar cannot hold exactly (see exact).
const inexactNumber = "inexact_number"

// number converts a float64 to the Cedar value of the digits the tool server
// is sent (its shortest decimal form, as tools.Encode writes it).
func number(f float64, inexact *bool) (types.Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("number %v is not JSON", f)
	}
	if f == 0 {
		return types.Long(0), nil
	}
	return exact(strconv.FormatFloat(f, 'f', -1, 64), inexact), nil
}

// exact converts a plain decimal spelling (no exponent) to a Long when it has
// no fraction and fits int64, or to a Decimal when it has at most 4
// fractional digits and fits Cedar's decimal range. Any other number
// (1000.00004, 1e-7, 1e19) is never rounded, which would let
// `context.amount > 1000` pass 1000.00004 while the tool server is sent
// 1000.00004: it becomes the record {inexact_number: "<digits>"}, which
// compares equal to no number (as the exact value would) and makes every
// ordering, arithmetic or decimal method on it an evaluation error, which
// denies. A rule that never reads it is unaffected.
func exact(s string, inexact *bool) types.Value {
	whole, frac, dotted := strings.Cut(s, ".")
	frac = strings.TrimRight(frac, "0")
	if !dotted || frac == "" {
		if i, err := strconv.ParseInt(whole, 10, 64); err == nil {
			return types.Long(i)
		}
	} else if len(frac) <= 4 {
		if d, err := types.ParseDecimal(whole + "." + frac); err == nil {
			return d
		}
	}
	*inexact = true
	return types.NewRecord(types.RecordMap{inexactNumber: types.String(s)})
}
