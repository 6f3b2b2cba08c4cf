package model

// Reason explains a decision: why a job is pending, why it failed, why it was
// cancelled. Code is stable (scripts and tests match on it); Message is for
// people and carries numbers.
type Reason struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Stable reason codes. Append only; never rename.
const (
	ReasonNone        = ""
	ReasonPriority    = "Priority"        // higher-priority or earlier jobs are ahead
	ReasonResources   = "Resources"       // no node has room now
	ReasonNoFit       = "NoNodeFits"      // no ready node could ever hold a task
	ReasonGang        = "GangUnplaceable" // not all tasks of the job fit at once
	ReasonNoNodes     = "NoNodes"         // no schedulable node at all
	ReasonConstraints = "Constraints"     // no node has the required labels
	ReasonNewJob      = "NotYetScheduled" // submitted; the scheduler has not looked yet
	ReasonRequeued    = "Requeued"        // work was lost and the job waits for a retry
	ReasonBackoff     = "Backoff"         // requeued; waiting out its retry backoff
	ReasonNodeLost    = "NodeLost"        // terminal: node down and no retries left
	ReasonTaskFailed  = "TaskFailed"      // terminal: a task exited non-zero
	ReasonWalltime    = "TimeLimit"       // terminal: walltime exceeded
	ReasonOOM         = "OutOfMemory"     // terminal: a task was OOM-killed
	ReasonCancelled   = "Cancelled"       // terminal: a user cancelled it
	ReasonStartFailed = "StartFailed"     // terminal: the agent could not start a task
	ReasonCompleted   = "Completed"       // terminal: every task exited 0

	// Added with the fair-queue scheduler.
	ReasonQuota           = "QuotaExceeded"            // the queue (or its cohort) is at its quota limit
	ReasonReserved        = "Reserved"                 // blocked; holds a reservation (estimated start in the message)
	ReasonBackfill        = "ReservedForOthers"        // would fit now but would delay a reserved job
	ReasonTopology        = "Topology"                 // the gang does not fit inside one topology domain
	ReasonPreempting      = "Preempting"               // lower-priority or borrowing work is being stopped for it
	ReasonDependency      = "Dependency"               // waiting for jobs it depends on
	ReasonDependencyNever = "DependencyNeverSatisfied" // a dependency can never be met; the server fails the job
	ReasonArrayThrottle   = "ArrayThrottle"            // the array runs as many elements as its %N allows
	ReasonPreempted       = "Preempted"                // event/requeue reason: stopped to make room for another job
	ReasonInvalid         = "InvalidJob"               // the job cannot be scheduled as written (see message)
)
