package domain

import (
	"errors"
	"fmt"
	"time"
	// The off_hours rule names an IANA zone; the audit image may ship no zoneinfo, so the
	// database is embedded (as the messaging service does) and a valid zone always loads.
	_ "time/tzdata"
)

// WorkingHours is the off_hours rule's working day: Start and End are "15:04" local times in
// TimeZone (an IANA name such as "Europe/London"); End before Start means the working day
// runs past midnight. With Weekends set, all of Saturday and Sunday count as off hours.
type WorkingHours struct {
	Start    string `json:"start"`
	End      string `json:"end"`
	TimeZone string `json:"time_zone"`
	Weekends bool   `json:"weekends"`
}

// clock is WorkingHours parsed: minutes after local midnight and the zone.
type clock struct {
	start, end int
	loc        *time.Location
	weekends   bool
}

// parse checks the hours and loads the zone.
func (h WorkingHours) parse() (clock, error) {
	start, err := minuteOfDay(h.Start)
	if err != nil {
		return clock{}, fmt.Errorf("start: %w", err)
	}
	end, err := minuteOfDay(h.End)
	if err != nil {
		return clock{}, fmt.Errorf("end: %w", err)
	}
	if start == end {
		return clock{}, errors.New("start and end are the same time")
	}
	if h.TimeZone == "" {
		// time.LoadLocation("") is UTC: say the zone explicitly rather than get it silently.
		return clock{}, errors.New("time_zone is required (an IANA name such as Europe/London, or UTC)")
	}
	if h.TimeZone == "Local" {
		return clock{}, errors.New(`time_zone "Local" is the host's zone: name the site's IANA zone`)
	}
	loc, err := time.LoadLocation(h.TimeZone)
	if err != nil {
		return clock{}, fmt.Errorf("time_zone %q is not an IANA time zone", h.TimeZone)
	}
	return clock{start: start, end: end, loc: loc, weekends: h.Weekends}, nil
}

func minuteOfDay(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a HH:MM time", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// offHours reports whether t falls outside the working hours, judged on the wall clock of the
// zone (so a 07:00 start follows the clocks across daylight-saving changes).
func (c clock) offHours(t time.Time) bool {
	local := t.In(c.loc)
	if c.weekends && (local.Weekday() == time.Saturday || local.Weekday() == time.Sunday) {
		return true
	}
	m := local.Hour()*60 + local.Minute()
	if c.start < c.end {
		return m < c.start || m >= c.end
	}
	return m < c.start && m >= c.end // the working day wraps midnight
}
