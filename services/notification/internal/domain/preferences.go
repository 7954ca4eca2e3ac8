package domain

import (
	"errors"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Limits on preference values.
const (
	MaxDigestWindow     = 24 * time.Hour
	MaxReminderAfter    = 30 * 24 * time.Hour
	DefaultReminderWait = 48 * time.Hour
	MaxPoolSubscription = 32
	maxAddressLen       = 512
)

// invalidPreferences is the refusal of preference values that break rules: one line per
// problem, each naming a field and a rule, never a value (an address is PHI).
func invalidPreferences(problems ...string) error {
	lines := make([]string, len(problems))
	for i, p := range problems {
		lines[i] = "invalid preferences: " + p
	}
	return usererr.New(usererr.InvalidArgument, ReasonInvalidPreferences, strings.Join(lines, "\n"))
}

// ChannelSetting is one channel of a person's preferences. Address is the plaintext contact
// point (PHI): it lives only in memory, sealed before it is stored.
type ChannelSetting struct {
	Enabled  bool
	Address  string
	Verified bool
	// HasAddress says an address is stored, when Address was not decrypted.
	HasAddress bool
}

// QuietHours is a daily window, in the person's time zone, during which nothing is sent.
type QuietHours struct {
	Enabled     bool
	StartMinute int
	EndMinute   int
	TimeZone    string
}

// Preferences are one person's alert settings.
type Preferences struct {
	Subject           string
	Role              Role
	Channels          map[Channel]ChannelSetting
	Quiet             QuietHours
	DigestWindow      time.Duration
	RemindersEnabled  bool
	ReminderAfter     time.Duration
	Locale            string
	PoolSubscriptions []string
	Version           int64
	UpdateTime        time.Time
}

// DefaultPreferences are what a person who never saved any has: no channel on (the identity
// provider gives this service no contact point), no quiet hours, no digest, no reminders.
func DefaultPreferences(subject string) Preferences {
	return Preferences{Subject: subject, Channels: map[Channel]ChannelSetting{}, Quiet: QuietHours{TimeZone: "UTC"}, ReminderAfter: DefaultReminderWait}
}

// Channel returns the setting of c (the zero setting when absent).
func (p Preferences) Channel(c Channel) ChannelSetting { return p.Channels[c] }

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// pushToken is "fcm:<registration token>" or "apns:<device token>": the prefix picks the
// payload shape and gateway route.
var pushToken = regexp.MustCompile(`^(fcm|apns):[A-Za-z0-9_:\-.]{8,}$`)

// ValidateAddress checks a contact point's syntax for its channel. The error (an
// INVALID_PREFERENCES refusal) never contains the address.
func ValidateAddress(c Channel, addr string) error {
	if p := addressProblem(c, addr); p != "" {
		return invalidPreferences(p)
	}
	return nil
}

// addressProblem names what is wrong with addr for c, or returns "".
func addressProblem(c Channel, addr string) string {
	if len(addr) > maxAddressLen && c != ChannelPush || len(addr) > 4096 {
		return c.String() + ".address is too long"
	}
	switch c {
	case ChannelEmail:
		a, err := mail.ParseAddress(addr)
		if err != nil || a.Address != addr || a.Name != "" {
			return "email.address is not a plain email address"
		}
	case ChannelSMS:
		if !e164.MatchString(addr) {
			return "sms.address is not an E.164 phone number"
		}
	case ChannelPush:
		if !pushToken.MatchString(addr) {
			return "push.address is not fcm:<token> or apns:<token>"
		}
	case ChannelWebhook:
		u, err := url.Parse(addr)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
			return "webhook.address is not an https:// URL"
		}
	default:
		return "unknown channel"
	}
	return ""
}

// Validate checks every rule and reports all problems at once (field names only), as one
// INVALID_PREFERENCES refusal.
func (p Preferences) Validate() error {
	var problems []string
	for c, s := range p.Channels {
		if s.Address != "" {
			if prob := addressProblem(c, s.Address); prob != "" {
				problems = append(problems, prob)
			}
		}
	}
	q := p.Quiet
	if q.StartMinute < 0 || q.StartMinute > 1439 || q.EndMinute < 0 || q.EndMinute > 1439 {
		problems = append(problems, "quiet_hours minutes must be within 0..1439")
	}
	if _, err := LoadZone(q.TimeZone); err != nil {
		problems = append(problems, "quiet_hours.time_zone is not an IANA time zone")
	}
	if p.DigestWindow < 0 || p.DigestWindow > MaxDigestWindow {
		problems = append(problems, "digest_window must be within 0..24h")
	}
	if p.ReminderAfter < 0 || p.ReminderAfter > MaxReminderAfter {
		problems = append(problems, "reminder_after must be within 0..720h")
	}
	if p.Locale != "" && !localePattern.MatchString(p.Locale) {
		problems = append(problems, "locale is not a BCP 47 tag")
	}
	if len(p.PoolSubscriptions) > MaxPoolSubscription {
		problems = append(problems, "too many pool_subscriptions")
	}
	for _, pool := range p.PoolSubscriptions {
		if !IsPoolID(pool) {
			problems = append(problems, "pool_subscriptions holds a malformed pool id")
			break
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return invalidPreferences(problems...)
}

var localePattern = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8}){0,3}$`)

// LoadZone loads an IANA zone; "" means UTC. "Local" is refused: it means the server's zone.
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" || strings.ContainsAny(name, " \\") {
		return nil, errors.New("not an IANA zone")
	}
	return time.LoadLocation(name)
}

// QuietUntil returns, when now falls inside the quiet window, the instant it ends; otherwise
// the zero time. The window is [start, end) in local wall-clock minutes; end before start
// crosses midnight; start == end means no window. Daylight-saving gaps are handled by
// time.Date's normalisation.
func (q QuietHours) QuietUntil(now time.Time) time.Time {
	if !q.Enabled || q.StartMinute == q.EndMinute {
		return time.Time{}
	}
	loc, err := LoadZone(q.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	local := now.In(loc)
	minute := local.Hour()*60 + local.Minute()
	y, m, d := local.Date()
	endToday := time.Date(y, m, d, q.EndMinute/60, q.EndMinute%60, 0, 0, loc)
	if q.StartMinute < q.EndMinute {
		if minute >= q.StartMinute && minute < q.EndMinute {
			return endToday
		}
		return time.Time{}
	}
	// Crosses midnight: quiet from start to 24:00 and from 0:00 to end.
	switch {
	case minute >= q.StartMinute:
		return time.Date(y, m, d+1, q.EndMinute/60, q.EndMinute%60, 0, 0, loc)
	case minute < q.EndMinute:
		return endToday
	}
	return time.Time{}
}
