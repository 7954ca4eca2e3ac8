package pgstore

// The queries behind ListThreads and CountThreads, for the plan tests.
var (
	ListThreadsSQL  = listThreadsSQL
	CountThreadsSQL = countThreadsSQL
)
