using Akka.Actor;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Edge;

/// <summary>
/// Issues one command for a gRPC caller and completes when the session has accepted it or, when
/// the caller waits, when the session reports the outcome. The gRPC edge's only way to hear both
/// answers of a session (an Ask completes on the first).
/// </summary>
public sealed class CommandWaiter : ReceiveActor
{
    public static Props Props(IssueCommand command, bool waitForOutcome, IActorRef sessions, TaskCompletionSource<object> done, TimeSpan timeout) =>
        Akka.Actor.Props.Create(() => new CommandWaiter(command, waitForOutcome, sessions, done, timeout));

    private readonly TaskCompletionSource<object> done;

    public CommandWaiter(IssueCommand command, bool waitForOutcome, IActorRef sessions, TaskCompletionSource<object> done, TimeSpan timeout)
    {
        this.done = done;
        Receive<CommandAccepted>(accepted =>
        {
            if (waitForOutcome)
                return;
            done.TrySetResult(accepted);
            Context.Stop(Self);
        });
        Receive<CommandOutcome>(outcome =>
        {
            done.TrySetResult(outcome);
            Context.Stop(Self);
        });
        Receive<ReceiveTimeout>(_ =>
        {
            done.TrySetException(new TimeoutException($"the session of peer {command.PeerId} did not answer within {timeout.TotalSeconds:0} s"));
            Context.Stop(Self);
        });
        Context.SetReceiveTimeout(timeout);
        sessions.Tell(command);
    }

    protected override void PostStop() =>
        done.TrySetException(new TimeoutException("the command waiter stopped before an answer"));
}
