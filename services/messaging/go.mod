module github.com/securemsg/securemsg/services/messaging

go 1.26

replace github.com/securemsg/securemsg/gen => ../../gen
replace github.com/securemsg/securemsg/services/internal/platform => ../internal/platform
replace github.com/securemsg/securemsg/services/internal/testkit => ../internal/testkit
