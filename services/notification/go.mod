module github.com/securemsg/securemsg/services/notification

go 1.26

replace github.com/securemsg/securemsg/gen => ../../gen

replace github.com/securemsg/securemsg/services/internal/platform => ../internal/platform

replace github.com/securemsg/securemsg/services/internal/testkit => ../internal/testkit

require (
	github.com/wneessen/go-mail v0.7.2 // indirect
	golang.org/x/text v0.29.0 // indirect
)
