using System.Collections.Concurrent;
using MyDvpn.Protocol.Control;
using MyDvpn.SuperNode.Sessions;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>One call of <see cref="IEnrollmentClient.RedeemAsync"/>, as the fake saw it.</summary>
public sealed record Redemption(string Token, string PeerId, PeerRole Role, string Region, byte[] PublicKey);

/// <summary>
/// Stands in for the directory's token redemption (the gRPC client below it has tests of its own): records every
/// call and answers with <see cref="Respond"/>, by default a successful redemption of token id "token-1".
/// </summary>
public sealed class FakeEnrollmentClient : IEnrollmentClient
{
    private readonly ConcurrentQueue<Redemption> _calls = new();
    private volatile Func<Redemption, CancellationToken, Task<EnrollmentResult>> _respond =
        (_, _) => Task.FromResult<EnrollmentResult>(new EnrollmentResult.Redeemed("token-1"));

    public Func<Redemption, CancellationToken, Task<EnrollmentResult>> Respond
    {
        get => _respond;
        set => _respond = value;
    }

    public IReadOnlyList<Redemption> Calls => [.. _calls];

    public Task<EnrollmentResult> RedeemAsync(
        string token,
        string peerId,
        PeerRole role,
        string region,
        byte[] publicKey,
        CancellationToken ct)
    {
        var call = new Redemption(token, peerId, role, region, publicKey);
        _calls.Enqueue(call);
        return _respond(call, ct);
    }

    public void AnswerWith(EnrollmentResult result) => Respond = (_, _) => Task.FromResult(result);
}
