package policy

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/cedar-policy/cedar-go/types"
)

// maxDepth bounds the nesting of arguments converted to Cedar values.
const maxDepth = 32

// contextOf converts a call's JSON arguments into the Cedar context record,
// as documented at [Set.Authorize].
func contextOf(args map[string]any) (types.Record, error) {
	r, err := record(args, 0)
	if err != nil {
		return types.Record{}, fmt.Errorf("policy: argument %w", err)
	}
	return r, nil
}

func record(m map[string]any, depth int) (types.Record, error) {
	if depth > maxDepth {
		return types.Record{}, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	rm := make(types.RecordMap, len(m))
	for k, v := range m {
		cv, ok, err := value(v, depth)
		if err != nil {
			return types.Record{}, fmt.Errorf("%s: %w", k, err)
		}
		if ok {
			rm[types.String(k)] = cv
		}
	}
	return types.NewRecord(rm), nil
}

// value converts one JSON value; ok is false when it is to be omitted (nil).
func value(v any, depth int) (_ types.Value, ok bool, _ error) {
	switch v := v.(type) {
	case nil:
		return nil, false, nil
	case string:
		return types.String(v), true, nil
	case bool:
		return types.Boolean(v), true, nil
	case float64:
		n, err := number(v)
		return n, err == nil, err
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return types.Long(i), true, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, false, fmt.Errorf("number %q cannot be represented in Cedar", string(v))
		}
		n, err := number(f)
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
			cv, ok, err := value(e, depth+1)
			if err != nil {
				return nil, false, fmt.Errorf("[%d]: %w", i, err)
			}
			if ok {
				vals = append(vals, cv)
			}
		}
		return types.NewSet(vals...), true, nil
	case map[string]any:
		r, err := record(v, depth+1)
		return r, err == nil, err
	}
	return nil, false, fmt.Errorf("value of type %T cannot be represented in Cedar", v)
}

// number converts a float64 to a Long when integral and in range, else to a
// Decimal when in range.
func number(f float64) (types.Value, error) {
	const two63 = 0x1p63
	if f == math.Trunc(f) && f >= -two63 && f < two63 {
		return types.Long(int64(f)), nil
	}
	if scaled := f * 10000; scaled > -two63 && scaled < two63 { // false for NaN
		d, err := types.NewDecimalFromFloat(f)
		if err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("number %v cannot be represented in Cedar", f)
}
