package poolscmd_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/ctl/internal/poolscmd"
)

func TestParseHours(t *testing.T) {
	h, err := poolscmd.ParseHours("America/Chicago", []string{"Mon-Fri 08:00-17:00", "Sat 09:00-12:30"})
	if err != nil {
		t.Fatalf("ParseHours = %v", err)
	}
	if len(h.GetWindows()) != 6 {
		t.Fatalf("windows = %d, want 5 weekdays and Saturday", len(h.GetWindows()))
	}
	sat := h.GetWindows()[5]
	if sat.GetDayOfWeek() != 6 || sat.GetOpenMinute() != 540 || sat.GetCloseMinute() != 750 {
		t.Errorf("Saturday = %v, want day 6, 540-750", sat)
	}
	want := "mon 08:00-17:00, tue 08:00-17:00, wed 08:00-17:00, thu 08:00-17:00, fri 08:00-17:00, sat 09:00-12:30 America/Chicago"
	if got := poolscmd.FormatHours(h); got != want {
		t.Errorf("FormatHours = %q, want %q", got, want)
	}
	for _, bad := range [][]string{{"Fri-Mon 08:00-17:00"}, {"Mon 17:00-08:00"}, {"Mon"}, {"Funday 08:00-09:00"}, {"Mon 08:61-09:00"}, {"Mon 08:00-25:00"}} {
		if _, err := poolscmd.ParseHours("UTC", bad); err == nil {
			t.Errorf("ParseHours(%q) = nil error, want refused", bad)
		}
	}
	if _, err := poolscmd.ParseHours("", []string{"Mon 08:00-09:00"}); err == nil {
		t.Error("ParseHours without a time zone = nil error")
	}
	if got := poolscmd.FormatHours(nil); got != "always" {
		t.Errorf("FormatHours(nil) = %q, want always", got)
	}
}

func TestParseRole(t *testing.T) {
	for _, ok := range []string{"clinician", "STAFF", "lead"} {
		if _, err := poolscmd.ParseRole(ok); err != nil {
			t.Errorf("ParseRole(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "unspecified", "admin"} {
		if _, err := poolscmd.ParseRole(bad); err == nil {
			t.Errorf("ParseRole(%q) = nil error", bad)
		}
	}
}
