using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace MyDvpn.SuperNode.Relay;

public sealed partial class RelayLeg
{
    /// <summary>
    /// Linux: the threads that forward for every leg of the process (<see cref="RelaySettings.ForwardingThreads"/>). A
    /// leg's socket joins the epoll set of the thread with the fewest legs. The thread waits until any of its sockets is
    /// readable, takes up to <see cref="Batch"/> datagrams of that leg with one <c>recvmmsg</c>, routes each as the async
    /// loop does, sends those that go somewhere with one <c>sendmmsg</c>, and serves the next ready leg. Epoll is
    /// level-triggered: a leg with more queued comes back at the next wait, after the legs that were ready with it.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Why not the async loop: a receive that has to wait costs .NET's socket engine a wakeup of its epoll thread and a
    /// hop to a thread-pool thread, and the engine registers the socket for writability too, so freed send-buffer space
    /// wakes it as well. Measured on a busy 2-core host, that machinery took about as much CPU as the forwarding itself.
    /// Why not a thread per leg: 10 000 legs would be 10 000 threads.
    /// </para>
    /// <para>
    /// Both calls pass MSG_DONTWAIT: a datagram whose send buffer is full is dropped (<c>send_failed</c>) instead of
    /// stalling the thread's other legs. Threads start as legs need them and live as long as the process (idle, they
    /// block in epoll_wait until the <see cref="RelayService"/> that owns them is disposed); each holds
    /// <see cref="Batch"/> buffers of 64 KiB, pinned, whatever the number of legs.
    /// </para>
    /// </remarks>
    internal sealed class Forwarder : IDisposable
    {
        internal const int Batch = 32;
        private readonly Lock gate = new();
        private readonly List<Worker> workers = [];
        private readonly int threads;
        private readonly ILogger logger;

        private Forwarder(int threads, ILogger logger)
        {
            this.threads = threads;
            this.logger = logger;
        }

        /// <summary>
        /// A forwarder, started with its first thread; null where it cannot run (not Linux on x64 or arm64, no epoll or
        /// eventfd, glibc's wrappers not found): legs then loop on their own.
        /// </summary>
        public static Forwarder? TryStart(int threads, ILogger logger)
        {
            if (threads <= 0 || !OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture is not (Architecture.X64 or Architecture.Arm64))
                return null;
            var forwarder = new Forwarder(threads, logger);
            lock (forwarder.gate)
                return forwarder.TryStartWorker() is null ? null : forwarder;
        }

        /// <summary>Stops every thread and closes their epoll sets: for after the legs were closed.</summary>
        public void Dispose()
        {
            Worker[] stopping;
            lock (gate)
                stopping = [.. workers];
            foreach (var worker in stopping)
                worker.Stop();
        }

        /// <summary>Starts forwarding for the leg on the least busy thread (a new one while there are fewer than asked).</summary>
        /// <exception cref="IOException">The leg's socket could not be watched: it loops on its own.</exception>
        public Worker Add(RelayLeg leg)
        {
            Worker worker;
            lock (gate)
            {
                var least = workers.Where(w => !w.Stopped).MinBy(w => w.Legs);
                worker = (least is null || (least.Legs > 0 && workers.Count < threads) ? TryStartWorker() : null) ?? least
                    ?? throw new IOException("every relay forwarding thread stopped");
                worker.Legs++;
            }
            try
            {
                worker.Watch(leg);
            }
            catch
            {
                lock (gate)
                    worker.Legs--;
                throw;
            }
            return worker;
        }

        /// <summary>Another thread; null (and said) when it cannot start.</summary>
        private Worker? TryStartWorker()
        {
            try
            {
                var worker = new Worker(this, workers.Count, logger);
                workers.Add(worker);
                return worker;
            }
            catch (Exception ex) when (ex is IOException or DllNotFoundException or EntryPointNotFoundException)
            {
                logger.LogWarning("Relay forwarding thread {Index} could not start{Fallback}: {Error}", workers.Count,
                    workers.Count == 0 ? "; each relay leg forwards with an async loop of its own" : "", ex.Message);
                return null;
            }
        }

        /// <summary>One forwarding thread, its epoll set and its buffers (one pinned array: the kernel is given addresses into it).</summary>
        internal sealed class Worker
        {
            // struct msghdr and struct iovec on 64-bit Linux; struct mmsghdr is a msghdr and its msg_len, padded to 64.
            private const int NameOffset = 0, NameLengthOffset = 8, IovOffset = 16, IovLengthOffset = 24, FlagsOffset = 48, MessageLengthOffset = 56;
            private const int HeaderSize = 64, IovSize = 16, NameSize = 32, SlotSize = 65536;
            private const int EpollIn = 1, EpollAdd = 1, EpollDelete = 2, CloseOnExec = 0x80000, NonBlocking = 0x800;
            private const int DontWait = 0x40, Truncated = 0x20, Interrupted = 4, WouldBlock = 11;

            // epoll_event is packed (12 bytes) on x86-64 only.
            private static readonly int EventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
            private static readonly int EventDataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

            private static readonly int Events = 0;
            private static readonly int ReceiveHeaders = Events + Batch * 16;
            private static readonly int ReceiveIovs = ReceiveHeaders + Batch * HeaderSize;
            private static readonly int ReceiveNames = ReceiveIovs + Batch * IovSize;
            private static readonly int SendHeaders = ReceiveNames + Batch * NameSize;
            private static readonly int SendIovs = SendHeaders + Batch * HeaderSize;
            private static readonly int SendNames = SendIovs + Batch * IovSize;
            private static readonly int Slots = SendNames + Batch * NameSize;

            private readonly Forwarder forwarder;
            private readonly string name;
            private readonly ILogger logger;
            private readonly Thread thread;
            private readonly int epoll, wake;
            private readonly byte[] memory;
            private readonly nint address;
            private readonly ConcurrentQueue<TaskCompletionSource> released = new();
            private readonly SocketAddress fromV4 = new(AddressFamily.InterNetwork), fromV6 = new(AddressFamily.InterNetworkV6);
            private readonly bool[] sendToPeer = new bool[Batch];
            private volatile bool stopped, stopping;

            public Worker(Forwarder forwarder, int index, ILogger logger)
            {
                this.forwarder = forwarder;
                name = $"relay-forward-{index}";
                this.logger = logger;
                memory = GC.AllocateArray<byte>(Slots + Batch * SlotSize, pinned: true);
                address = Marshal.UnsafeAddrOfPinnedArrayElement(memory, 0);
                for (var i = 0; i < Batch; i++)
                {
                    Write<nint>(ReceiveHeaders + i * HeaderSize + NameOffset, address + ReceiveNames + i * NameSize);
                    Write<nint>(ReceiveHeaders + i * HeaderSize + IovOffset, address + ReceiveIovs + i * IovSize);
                    Write<nint>(ReceiveHeaders + i * HeaderSize + IovLengthOffset, 1);
                    Write<nint>(ReceiveIovs + i * IovSize, address + Slots + i * SlotSize);
                    Write<nint>(SendHeaders + i * HeaderSize + NameOffset, address + SendNames + i * NameSize);
                    Write<nint>(SendHeaders + i * HeaderSize + IovOffset, address + SendIovs + i * IovSize);
                    Write<nint>(SendHeaders + i * HeaderSize + IovLengthOffset, 1);
                }
                epoll = Native.EpollCreate(CloseOnExec);
                if (epoll < 0)
                    throw new IOException($"epoll_create1 failed: errno {Marshal.GetLastPInvokeError()}");
                wake = Native.EventFd(0, CloseOnExec | NonBlocking);
                if (wake < 0 || Native.EpollControl(epoll, EpollAdd, wake, Event(0)) != 0)
                {
                    var error = Marshal.GetLastPInvokeError();
                    Native.Close(epoll);
                    if (wake >= 0)
                        Native.Close(wake);
                    throw new IOException($"the forwarding thread's eventfd failed: errno {error}");
                }
                thread = new Thread(Run) { IsBackground = true, Name = name };
                thread.Start();
            }

            /// <summary>Legs served; under the forwarder's lock.</summary>
            public int Legs { get; set; }

            public bool Stopped => stopped;

            public void Watch(RelayLeg leg)
            {
                leg.descriptor = (int)leg.socket.SafeHandle.DangerousGetHandle();
                leg.handle = GCHandle.Alloc(leg);
                if (Native.EpollControl(epoll, EpollAdd, leg.descriptor, Event(GCHandle.ToIntPtr(leg.handle))) != 0)
                {
                    var error = Marshal.GetLastPInvokeError();
                    leg.handle.Free();
                    throw new IOException($"epoll_ctl could not add its socket: errno {error}");
                }
            }

            /// <summary>Stops forwarding for the leg; completes once the thread holds no reference to it or its socket.</summary>
            public async Task RemoveAsync(RelayLeg leg)
            {
                Native.EpollControl(epoll, EpollDelete, leg.descriptor, null);
                // The thread may be serving the leg from the wait that returned before it left the set: it lets go of
                // everything it got from that wait before it waits again, and completes this first.
                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                released.Enqueue(done);
                if (stopped)
                    Release();
                else
                    Native.Write(wake, 1UL, sizeof(ulong));
                await done.Task.ConfigureAwait(false);
                leg.handle.Free();
                lock (forwarder.gate)
                    Legs--;
            }

            /// <summary>Ends the thread (it wakes, sees the flag and returns) and closes its descriptors.</summary>
            public void Stop()
            {
                stopping = true;
                Native.Write(wake, 1UL, sizeof(ulong));
                if (!thread.Join(TimeSpan.FromSeconds(5)))
                {
                    logger.LogWarning("Relay forwarding thread {Thread} did not stop within 5 s; its descriptors stay open", name);
                    return;
                }
                Native.Close(epoll);
                Native.Close(wake);
            }

            private static byte[] Event(nint data)
            {
                var ev = new byte[16];
                BitConverter.TryWriteBytes(ev, EpollIn);
                BitConverter.TryWriteBytes(ev.AsSpan(EventDataOffset), (long)data);
                return ev;
            }

            private void Release()
            {
                while (released.TryDequeue(out var done))
                    done.TrySetResult();
            }

            private void Run()
            {
                try
                {
                    while (true)
                    {
                        Release();
                        var ready = Native.EpollWait(epoll, address + Events, Batch, -1);
                        if (ready < 0)
                        {
                            var error = Marshal.GetLastPInvokeError();
                            if (error == Interrupted)
                                continue;
                            throw new IOException($"epoll_wait failed: errno {error}");
                        }
                        for (var i = 0; i < ready; i++)
                        {
                            var data = Read<long>(Events + i * EventSize + EventDataOffset);
                            if (data == 0)
                            {
                                Native.Read(wake, out _, sizeof(ulong));
                                if (stopping)
                                {
                                    stopped = true;
                                    Release();
                                    return;
                                }
                                continue;
                            }
                            if (GCHandle.FromIntPtr((nint)data).Target is not RelayLeg { closing: false } leg)
                                continue;
                            try
                            {
                                Forward(leg);
                            }
                            catch (Exception ex)
                            {
                                logger.LogError(ex, "Relay leg {AssignmentId}/{Side} on port {Port}: forwarding failed", leg.AssignmentId, leg.Side, leg.Port);
                            }
                        }
                    }
                }
                catch (Exception ex)
                {
                    logger.LogCritical(ex, "Relay forwarding thread {Thread} stopped: its legs forward nothing until they are opened again", name);
                    stopped = true;
                    Release();
                }
            }

            /// <summary>The leg's queued datagrams, up to <see cref="Batch"/>: received with one call, routed, sent with one call.</summary>
            private void Forward(RelayLeg leg)
            {
                var size = leg.settings.DatagramBufferSize;
                for (var i = 0; i < Batch; i++)
                {
                    Write(ReceiveHeaders + i * HeaderSize + NameLengthOffset, (uint)NameSize);
                    Write<nint>(ReceiveIovs + i * IovSize + 8, size);
                }
                var received = Native.ReceiveMessages(leg.descriptor, address + ReceiveHeaders, Batch, DontWait, 0);
                if (received <= 0)
                {
                    var error = Marshal.GetLastPInvokeError();
                    if (received < 0 && error is not (WouldBlock or Interrupted) && logger.IsEnabled(LogLevel.Debug))
                        logger.LogDebug("Relay leg {AssignmentId}/{Side} on port {Port} could not receive: errno {Error}", leg.AssignmentId, leg.Side, leg.Port, error);
                    return;
                }

                var now = leg.time.GetUtcNow().UtcTicks;
                var from = leg.socket.AddressFamily == AddressFamily.InterNetwork ? fromV4 : fromV6;
                var sending = 0;
                for (var i = 0; i < received; i++)
                {
                    var header = ReceiveHeaders + i * HeaderSize;
                    var length = (int)Read<uint>(header + MessageLengthOffset);
                    if (length >= size || (Read<int>(header + FlagsOffset) & Truncated) != 0)
                    {
                        // As in the async loop: a datagram that fills the buffer may have been cut.
                        leg.Drop(RelayDropReason.Oversize);
                        continue;
                    }
                    var nameLength = Math.Min((int)Read<uint>(header + NameLengthOffset), from.Buffer.Length);
                    memory.AsSpan(ReceiveNames + i * NameSize, nameLength).CopyTo(from.Buffer.Span);
                    from.Size = nameLength;
                    var to = leg.Route(from, now, out var toPeer);
                    if (to is null)
                        continue;
                    var send = SendHeaders + sending * HeaderSize;
                    to.Buffer.Span[..to.Size].CopyTo(memory.AsSpan(SendNames + sending * NameSize, NameSize));
                    Write(send + NameLengthOffset, (uint)to.Size);
                    Write<nint>(SendIovs + sending * IovSize, address + Slots + i * SlotSize);
                    Write<nint>(SendIovs + sending * IovSize + 8, length);
                    sendToPeer[sending] = toPeer;
                    sending++;
                }

                long toPeerPackets = 0, toPeerBytes = 0, toPartnerPackets = 0, toPartnerBytes = 0;
                var next = 0;
                while (next < sending)
                {
                    var sent = Native.SendMessages(leg.descriptor, address + SendHeaders + next * HeaderSize, (uint)(sending - next), DontWait);
                    if (sent < 0)
                    {
                        var error = Marshal.GetLastPInvokeError();
                        if (error == Interrupted)
                            continue;
                        // The first of the rest failed; those after it are tried again.
                        leg.Drop(RelayDropReason.SendFailed);
                        if (logger.IsEnabled(LogLevel.Debug))
                            logger.LogDebug("Relay leg {AssignmentId}/{Side} on port {Port} could not send {Direction}: errno {Error}",
                                leg.AssignmentId, leg.Side, leg.Port, sendToPeer[next] ? "to its peer" : "to its partner", error);
                        sent = 1;
                    }
                    else
                    {
                        for (var k = next; k < next + sent; k++)
                        {
                            var length = (long)Read<nint>(SendIovs + k * IovSize + 8);
                            if (sendToPeer[k])
                                (toPeerPackets, toPeerBytes) = (toPeerPackets + 1, toPeerBytes + length);
                            else
                                (toPartnerPackets, toPartnerBytes) = (toPartnerPackets + 1, toPartnerBytes + length);
                        }
                    }
                    next += sent;
                }
                leg.Forwarded(true, toPeerPackets, toPeerBytes, now);
                leg.Forwarded(false, toPartnerPackets, toPartnerBytes, now);
            }

            private T Read<T>(int offset) where T : struct => MemoryMarshal.Read<T>(memory.AsSpan(offset));

            private void Write<T>(int offset, T value) where T : struct => MemoryMarshal.Write(memory.AsSpan(offset), in value);
        }
    }

    /// <summary>The Linux calls the forwarder makes: glibc's wrappers of the system calls.</summary>
    private static class Native
    {
        [DllImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
        public static extern int EpollCreate(int flags);

        [DllImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
        public static extern int EpollControl(int epoll, int operation, int descriptor, byte[]? ev);

        [DllImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
        public static extern int EpollWait(int epoll, nint events, int maxEvents, int timeoutMs);

        [DllImport("libc", EntryPoint = "eventfd", SetLastError = true)]
        public static extern int EventFd(uint initial, int flags);

        [DllImport("libc", EntryPoint = "read", SetLastError = true)]
        public static extern nint Read(int descriptor, out ulong value, nint count);

        [DllImport("libc", EntryPoint = "write", SetLastError = true)]
        public static extern nint Write(int descriptor, in ulong value, nint count);

        [DllImport("libc", EntryPoint = "close", SetLastError = true)]
        public static extern int Close(int descriptor);

        [DllImport("libc", EntryPoint = "recvmmsg", SetLastError = true)]
        public static extern int ReceiveMessages(int descriptor, nint messages, uint count, int flags, nint timeout);

        [DllImport("libc", EntryPoint = "sendmmsg", SetLastError = true)]
        public static extern int SendMessages(int descriptor, nint messages, uint count, int flags);
    }
}
