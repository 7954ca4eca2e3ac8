package app_test

import (
	"testing"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/internal/platform/directory"
)

// TestDirectoryNames: the access report's staff names are the directory's, newest entry first.
func TestDirectoryNames(t *testing.T) {
	snap := directory.NewSnapshot()
	names := app.DirectoryNames{People: snap}
	if got := names.StaffName("clin-1"); got != "" {
		t.Errorf("StaffName(unknown) = %q, want none", got)
	}
	snap.Apply(&directoryv1.PersonEntry{Subject: "clin-1", StaffDisplayName: "Dr. Example", Version: 2})
	snap.Apply(&directoryv1.PersonEntry{Subject: "pat-1", Version: 3, Named: true})
	if got := names.StaffName("clin-1"); got != "Dr. Example" {
		t.Errorf("StaffName(clinician) = %q, want the directory's name", got)
	}
	if got := names.StaffName("pat-1"); got != "" {
		t.Errorf("StaffName(patient) = %q, want none: patients' names stay sealed in messaging", got)
	}
	snap.Apply(&directoryv1.PersonEntry{Subject: "clin-1", StaffDisplayName: "Dr. Renamed", Version: 4})
	if got := names.StaffName("clin-1"); got != "Dr. Renamed" {
		t.Errorf("StaffName(after a rename) = %q, want the newer name", got)
	}
}
