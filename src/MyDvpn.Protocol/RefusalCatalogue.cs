using System.Collections.Frozen;
using Grpc.Core;

namespace MyDvpn.Protocol.Control;

/// <summary>
/// What one <see cref="RefusalReason"/> means, in one place for every node: the gRPC status a refusal with it ends a call
/// with, whether it is <see cref="Permanent"/> (no retry can fix it: a peer stops reconnecting, or stops asking for an
/// exit, until the operator acts), and the <see cref="Advice"/> an operator reads next to it.
/// </summary>
public sealed record RefusalPolicy(RefusalReason Reason, StatusCode Status, bool Permanent, string Advice)
{
    /// <summary>The reason as it crosses the wire (e.g. <c>BAD_SIGNATURE</c>).</summary>
    public string WireName => RefusalReasons.WireName(Reason);
}

/// <summary>
/// The refusal catalogue: a <see cref="RefusalPolicy"/> for every <see cref="RefusalReason"/> (a test fails for a value
/// without one). SuperNodes and BaseNodes take the status from here; peers take permanence and advice from here.
/// </summary>
public static class RefusalCatalogue
{
    private const string NewToken = "get a new token from the operator (`mydvpn admin token create`) and pass it with --token";

    private static readonly FrozenDictionary<RefusalReason, RefusalPolicy> Policies = new RefusalPolicy[]
    {
        new(RefusalReason.BadSignature, StatusCode.Unauthenticated, true,
            "the SuperNode did not accept this peer's signature: --key is not the key this peer enrolled with"),
        new(RefusalReason.ReplayedChallenge, StatusCode.Unauthenticated, false,
            "a challenge was answered twice or on another stream; the agent reconnects and gets a fresh one"),
        new(RefusalReason.ExpiredChallenge, StatusCode.Unauthenticated, false,
            "the challenge expired before the answer came; the agent reconnects (a very slow link or host makes this repeat)"),
        new(RefusalReason.UnknownPeer, StatusCode.Unauthenticated, true,
            "the region does not know this peer: enroll it with --token TOKEN (from `mydvpn admin token create`); if it enrolled before, "
            + "delete enrollment.json in its --state-dir and enroll it again with a new token"),
        new(RefusalReason.BadToken, StatusCode.PermissionDenied, true, "the enrollment token is not known: " + NewToken),
        new(RefusalReason.TokenUsedUp, StatusCode.PermissionDenied, true, "the enrollment token has no uses left: " + NewToken),
        new(RefusalReason.TokenExpired, StatusCode.PermissionDenied, true, "the enrollment token expired: " + NewToken),
        new(RefusalReason.Revoked, StatusCode.PermissionDenied, true,
            "the operator revoked this peer; it may not connect again unless the operator takes the revocation back"),
        new(RefusalReason.RoleNotAllowed, StatusCode.PermissionDenied, true,
            "this peer may not take the role it asked for: run it with the --role it enrolled with (or one its token allows)"),
        new(RefusalReason.WrongRegion, StatusCode.PermissionDenied, true,
            "this peer does not belong to the region it names: check --region (and that --supernode serves that region)"),
        new(RefusalReason.AuthTimeout, StatusCode.DeadlineExceeded, false,
            "no AuthRequest came in time; the agent reconnects"),
        new(RefusalReason.MalformedMessage, StatusCode.InvalidArgument, true,
            "the other side could not read this message: check the request's values, and that the agent's and the SuperNode's versions match"),
        new(RefusalReason.RateLimited, StatusCode.ResourceExhausted, false,
            "too many attempts in a short time; the agent backs off and tries again"),
        new(RefusalReason.Replaced, StatusCode.Aborted, true,
            "another agent with this peer id connected and took over its session: run one agent per peer id"),
        new(RefusalReason.HeartbeatTimeout, StatusCode.DeadlineExceeded, false,
            "the stream was silent too long; the agent reconnects"),
        new(RefusalReason.AtCapacity, StatusCode.ResourceExhausted, false,
            "this SuperNode holds its maximum of streams; the agent tries another SuperNode of the region"),
        new(RefusalReason.Unavailable, StatusCode.Unavailable, false,
            "the region cannot serve this right now (starting, journal or directory unreachable); the agent tries again"),
        new(RefusalReason.NoExitAvailable, StatusCode.ResourceExhausted, false,
            "every exit of the region is offline, full or failing; the agent asks again with backoff (the operator may add exits)"),
        new(RefusalReason.ExitSetupFailed, StatusCode.Unavailable, false,
            "an exit was picked but the setup did not complete; the agent asks again with backoff"),
        new(RefusalReason.UnknownRegion, StatusCode.NotFound, true,
            "no SuperNode of that region is known to the directory: check --exit-region"),
        new(RefusalReason.RegionUnreachable, StatusCode.Unavailable, false,
            "no SuperNode of that region answered; the agent asks again with backoff"),
        new(RefusalReason.NotAnExitClient, StatusCode.PermissionDenied, true,
            "only a client may use an exit: run this peer with --role client or both, as the operator allows it"),
        new(RefusalReason.CertificateMismatch, StatusCode.PermissionDenied, true,
            "the caller's certificate does not name what it claims, or its role may not call this service: a node runs only with "
            + "the certificate issued for its own role, --id and --region (`mydvpn ca issue --role base|super --name ID [--region REGION]`); "
            + "see docs/trust-model.md for what each role may call"),
        new(RefusalReason.CertificateRevoked, StatusCode.PermissionDenied, true,
            "the operator revoked the caller's certificate (`mydvpn ca revoke`): issue this node or admin a new certificate "
            + "(`mydvpn ca issue` with the same role, name and region), put it in its --tls directory and restart it"),
    }.ToFrozenDictionary(p => p.Reason);

    /// <summary>The policy of a reason a newer node may send that this one does not know: transient, status UNKNOWN.</summary>
    private static readonly RefusalPolicy Unrecognised = new(RefusalReason.Unspecified, StatusCode.Unknown, false,
        "the other side refused with a reason this version does not know; it is retried");

    /// <summary>Every reason the catalogue holds.</summary>
    public static IReadOnlyCollection<RefusalReason> Known => Policies.Keys;

    /// <summary>The policy of <paramref name="reason"/>; a reason without an entry (a newer node's) is transient.</summary>
    public static RefusalPolicy For(RefusalReason reason) =>
        Policies.TryGetValue(reason, out var policy) ? policy : Unrecognised with { Reason = reason };

    public static StatusCode StatusOf(RefusalReason reason) => For(reason).Status;

    public static bool IsPermanent(RefusalReason reason) => For(reason).Permanent;

    public static string AdviceFor(RefusalReason reason) => For(reason).Advice;
}
