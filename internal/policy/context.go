package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

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
		if !strings.ContainsAny(string(v), "eE") {
			n, err := exact(string(v))
			return n, err == nil, err
		}
		f, err := v.Float64()
		if err != nil {
			return nil, false, errInexact
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

// errInexact refuses a number Cedar cannot hold exactly: deciding on a
// rounded value would let `context.amount > 1000` pass 1000.00004, which the
// tool server is sent as it is. The value is not quoted (it may spell a
// secret).
var errInexact = errors.New("number has more than 4 decimal places or is out of Cedar's range, so policy cannot compare it exactly")

// number converts a float64 to the Cedar value of the digits the tool server
// is sent (its shortest decimal form, as tools.Encode writes it).
func number(f float64) (types.Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errInexact
	}
	if f == 0 {
		return types.Long(0), nil
	}
	return exact(strconv.FormatFloat(f, 'f', -1, 64))
}

// exact converts a plain decimal spelling (no exponent) to a Long when it has
// no fraction and fits int64, else to a Decimal when it has at most 4
// fractional digits and fits Cedar's decimal range; anything else is
// errInexact, never rounded.
func exact(s string) (types.Value, error) {
	whole, frac, dotted := strings.Cut(s, ".")
	frac = strings.TrimRight(frac, "0")
	if !dotted || frac == "" {
		i, err := strconv.ParseInt(whole, 10, 64)
		if err != nil {
			return nil, errInexact
		}
		return types.Long(i), nil
	}
	if len(frac) > 4 {
		return nil, errInexact
	}
	d, err := types.ParseDecimal(whole + "." + frac)
	if err != nil {
		return nil, errInexact
	}
	return d, nil
}
