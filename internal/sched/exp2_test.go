package sched

import (
	"math"
	"testing"
)

// TestExp2Neg: the fast 2^x used by fair share agrees with math.Exp2 to
// 1e-6 relative error over the range it is used in.
func TestExp2Neg(t *testing.T) {
	for x := 0.0; x >= -60; x -= 0.0137 {
		got, want := exp2neg(x), math.Exp2(x)
		if math.Abs(got-want) > 1e-6*want {
			t.Fatalf("exp2neg(%v) = %v, want %v", x, got, want)
		}
	}
	if got := exp2neg(-5000); got != 0 {
		t.Errorf("exp2neg(-5000) = %v, want 0", got)
	}
}
