using System.Collections.Concurrent;
using System.Threading.Channels;
using Grpc.Core;
using MyDvpn.Protocol.Control;
using MyDvpn.Protocol.SuperNode;
using MyDvpn.SuperNode.Exits;

namespace MyDvpn.SuperNode.Tests.Exits;

/// <summary>
/// Stands in for the way a session reaches an exit region (in production the gRPC <see cref="ExitAllocationClient"/>):
/// every allocation waits until the test answers it, every release is recorded and answered by
/// <see cref="RespondToRelease"/> (by default: released).
/// </summary>
public sealed class FakeExitAllocator : IExitAllocator
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    private readonly Channel<PendingAllocation> _allocations = Channel.CreateUnbounded<PendingAllocation>();
    private readonly Channel<ReleaseExitRequest> _releases = Channel.CreateUnbounded<ReleaseExitRequest>();
    private readonly ConcurrentQueue<ReleaseExitRequest> _releaseCalls = new();
    private volatile Func<ReleaseExitRequest, int, Task<bool>> _respondToRelease = (_, _) => Task.FromResult(true);
    private int _allocationCalls;

    /// <summary>Answers a release; the int is the call's number, from 1.</summary>
    public Func<ReleaseExitRequest, int, Task<bool>> RespondToRelease
    {
        get => _respondToRelease;
        set => _respondToRelease = value;
    }

    public int AllocationCalls => Volatile.Read(ref _allocationCalls);

    public IReadOnlyList<ReleaseExitRequest> ReleaseCalls => [.. _releaseCalls];

    public Task<ExitAllocationResult> AllocateAsync(AllocateExitRequest request, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _allocationCalls);
        var pending = new PendingAllocation(request.Clone(), cancellationToken);
        _allocations.Writer.TryWrite(pending);
        return pending.Result;
    }

    public async Task<bool> ReleaseAsync(ReleaseExitRequest request, CancellationToken cancellationToken)
    {
        _releaseCalls.Enqueue(request.Clone());
        _releases.Writer.TryWrite(request.Clone());
        return await _respondToRelease(request, _releaseCalls.Count);
    }

    /// <summary>Answers a relay request (the exit region's leg); by default it opens one at 192.0.2.2:40000.</summary>
    public Func<OpenRelayRequest, Task<RelayLegInfo>> RespondToRelay { get; set; } =
        _ => Task.FromResult(new RelayLegInfo { Endpoint = "192.0.2.2:40000", SupernodeId = "sn-b" });

    public ConcurrentQueue<OpenRelayRequest> RelayCalls { get; } = new();

    public Task<RelayLegInfo> OpenRelayAsync(OpenRelayRequest request, CancellationToken cancellationToken)
    {
        RelayCalls.Enqueue(request.Clone());
        return RespondToRelay(request);
    }

    /// <summary>Answers an unpin of the exit (a relayed client tries direct); by default the exit applied it.</summary>
    public Func<ReturnDirectRequest, Task> RespondToReturnDirect { get; set; } = _ => Task.CompletedTask;

    public ConcurrentQueue<ReturnDirectRequest> ReturnDirectCalls { get; } = new();

    public ConcurrentQueue<CloseRelayRequest> CloseRelayCalls { get; } = new();

    public Task ReturnDirectAsync(ReturnDirectRequest request, CancellationToken cancellationToken)
    {
        ReturnDirectCalls.Enqueue(request.Clone());
        return RespondToReturnDirect(request);
    }

    public ConcurrentQueue<PathFailureReport> PathFailureReports { get; } = new();

    public Task ReportPathFailureAsync(PathFailureReport report, CancellationToken cancellationToken)
    {
        PathFailureReports.Enqueue(report.Clone());
        return Task.CompletedTask;
    }

    public Task<uint> CloseRelayAsync(CloseRelayRequest request, CancellationToken cancellationToken)
    {
        CloseRelayCalls.Enqueue(request.Clone());
        return Task.FromResult(1u);
    }

    /// <summary>The next allocation a session asked for, still unanswered.</summary>
    public async Task<PendingAllocation> NextAllocationAsync()
    {
        using var timeout = new CancellationTokenSource(Patience);
        try
        {
            return await _allocations.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no exit allocation was asked for within {Patience}");
        }
    }

    /// <summary>The next release a session asked for (already answered by <see cref="RespondToRelease"/>).</summary>
    public async Task<ReleaseExitRequest> NextReleaseAsync()
    {
        using var timeout = new CancellationTokenSource(Patience);
        try
        {
            return await _releases.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no exit release was asked for within {Patience}");
        }
    }
}

/// <summary>An allocation call the test answers; cancelled when the caller's token is (e.g. its session stopped).</summary>
public sealed class PendingAllocation
{
    private readonly TaskCompletionSource<ExitAllocationResult> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public PendingAllocation(AllocateExitRequest request, CancellationToken cancellationToken)
    {
        Request = request;
        cancellationToken.Register(() => _result.TrySetCanceled(cancellationToken));
    }

    public AllocateExitRequest Request { get; }

    public Task<ExitAllocationResult> Result => _result.Task;

    public void Allocate(ExitAssignmentRecord assignment) => _result.SetResult(new ExitAllocationResult.Allocated(assignment));

    public void Refuse(RefusalReason reason, string detail) =>
        _result.SetResult(new ExitAllocationResult.Refused(reason, detail));
}
