using Akka.Cluster.Sharding;
using MyDvpn.Protocol.Control;
using MyDvpn.Security;
using MyDvpn.SuperNode.Sessions;
using Xunit.Abstractions;

namespace MyDvpn.SuperNode.Tests.Sessions;

/// <summary>Authentication and enrollment of a peer by its session, over a real SQLite journal.</summary>
public sealed class PeerSessionAuthenticationTests(ITestOutputHelper output) : PeerSessionTestKit(output)
{
    [Fact]
    public void Enrolling_peer_redeems_its_token_once_and_then_authenticates_with_its_stored_key()
    {
        var entity = Start();

        var enrolled = Request<PeerAuthenticated>(entity, EnrollingAuth(PeerRole.Exit));
        var later = Request<PeerAuthenticated>(entity, Auth(PeerRole.Exit));

        Assert.Equal(PeerRole.Exit, enrolled.Role);
        Assert.Matches("^[0-9a-f]{32}$", enrolled.SessionId);
        Assert.Matches("^[0-9a-f]{32}$", later.SessionId);
        Assert.NotEqual(enrolled.SessionId, later.SessionId);
        var call = Assert.Single(Enrollment.Calls);
        Assert.Equal((Token, PeerId, PeerRole.Exit, Region), (call.Token, call.PeerId, call.Role, call.Region));
        Assert.Equal(Key.PublicKey, call.PublicKey);
        var enrollment = Assert.Single(Journaled<PeerEnrolled>());
        Assert.Equal((PeerRole.Exit, "token-1"), (enrollment.Role, enrollment.TokenId));
        Assert.Equal(Key.PublicKey, enrollment.PublicKey);
        Assert.Equal([enrolled.SessionId, later.SessionId], Journaled<SessionStarted>().Select(s => s.SessionId));
        var state = State(entity);
        Assert.True(state.Enrolled);
        Assert.Equal(PeerRole.Exit, state.Role);
        Assert.Equal(later.SessionId, state.SessionId);
    }

    [Fact]
    public void Bad_signature_of_an_enrolling_peer_is_refused_without_spending_the_token()
    {
        var entity = Start();

        var refused = Request<PeerRefused>(entity, Auth(signer: IdentityKey.Generate(), token: Token, publicKey: Key.PublicKey));

        Assert.Equal(RefusalReason.BadSignature, refused.Reason);
        Assert.Empty(Enrollment.Calls);
        Assert.False(State(entity).Enrolled);
        Assert.Empty(JournalEvents(PersistenceId));
    }

    [Fact]
    public void Enrolled_peer_is_checked_against_its_stored_key_and_a_new_key_and_token_are_ignored()
    {
        var entity = Start();
        Enroll(entity);
        var other = IdentityKey.Generate();

        var refused = Request<PeerRefused>(entity, Auth(signer: other, token: Token, publicKey: other.PublicKey));

        Assert.Equal(RefusalReason.BadSignature, refused.Reason);
        Assert.Single(Enrollment.Calls);
        Assert.Equal(Key.PublicKey, Assert.Single(Journaled<PeerEnrolled>()).PublicKey);
    }

    [Fact]
    public void Enrolled_peer_presenting_its_token_again_is_authenticated_without_redeeming_it()
    {
        var entity = Start();
        Enroll(entity);

        Request<PeerAuthenticated>(entity, EnrollingAuth());

        Assert.Single(Enrollment.Calls);
    }

    [Fact]
    public void Unknown_peer_without_a_token_is_refused_as_unknown()
    {
        var entity = Start();

        var refused = Request<PeerRefused>(entity, Auth(publicKey: Key.PublicKey));

        Assert.Equal(new PeerRefused(PeerId, RefusalReason.UnknownPeer, refused.Detail), refused);
        Assert.Empty(Enrollment.Calls);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(31)]
    [InlineData(33)]
    public void Enrolling_peer_without_a_32_byte_public_key_is_refused_as_malformed(int keyLength)
    {
        var entity = Start();

        var refused = Request<PeerRefused>(entity, Auth(token: Token, publicKey: keyLength == 0 ? null : new byte[keyLength]));

        Assert.Equal(RefusalReason.MalformedMessage, refused.Reason);
        Assert.Empty(Enrollment.Calls);
    }

    [Theory]
    [InlineData(PeerRole.Supernode)]
    [InlineData(PeerRole.Unspecified)]
    public void Peer_claiming_a_role_no_peer_may_take_is_refused(PeerRole role)
    {
        var entity = Start();
        Enroll(entity, PeerRole.Both);

        Assert.Equal(RefusalReason.RoleNotAllowed, Request<PeerRefused>(entity, Auth(role)).Reason);
        Assert.Equal(RefusalReason.RoleNotAllowed, Request<PeerRefused>(entity, EnrollingAuth(role)).Reason);
    }

    [Theory]
    [InlineData(PeerRole.Client, PeerRole.Exit)]
    [InlineData(PeerRole.Client, PeerRole.Both)]
    [InlineData(PeerRole.Exit, PeerRole.Client)]
    [InlineData(PeerRole.Exit, PeerRole.Both)]
    public void Peer_claiming_a_role_its_enrollment_does_not_allow_is_refused(PeerRole enrolled, PeerRole claimed)
    {
        var entity = Start();
        Enroll(entity, enrolled);

        Assert.Equal(RefusalReason.RoleNotAllowed, Request<PeerRefused>(entity, Auth(claimed)).Reason);
    }

    [Theory]
    [InlineData(PeerRole.Client)]
    [InlineData(PeerRole.Exit)]
    [InlineData(PeerRole.Both)]
    public void Peer_enrolled_as_both_may_act_in_any_peer_role(PeerRole claimed)
    {
        var entity = Start();
        Enroll(entity, PeerRole.Both);

        Assert.Equal(claimed, Request<PeerAuthenticated>(entity, Auth(claimed)).Role);
    }

    [Fact]
    public void Peer_claiming_another_region_is_refused()
    {
        var entity = Start();

        var refused = Request<PeerRefused>(entity, Auth(token: Token, publicKey: Key.PublicKey, region: "us-east"));

        Assert.Equal(RefusalReason.WrongRegion, refused.Reason);
        Assert.Empty(Enrollment.Calls);
    }

    [Theory]
    [InlineData(RefusalReason.BadToken)]
    [InlineData(RefusalReason.TokenUsedUp)]
    [InlineData(RefusalReason.TokenExpired)]
    public void Token_the_directory_refuses_is_refused_with_its_reason_and_nothing_is_enrolled(RefusalReason reason)
    {
        var entity = Start();
        Enrollment.AnswerWith(new EnrollmentResult.Refused(reason, "the directory says no"));

        var refused = Request<PeerRefused>(entity, EnrollingAuth());

        Assert.Equal(new PeerRefused(PeerId, reason, "the directory says no"), refused);
        Assert.False(State(entity).Enrolled);
        Assert.Empty(JournalEvents(PersistenceId));
    }

    /// <summary>
    /// Issue 13: a well-formed login naming an unknown peer kept a session alive (until it was idle, 2 min). Nothing is
    /// persisted for it, and its session asks its shard to stop it at once, whether its token was made up, missing or its
    /// signature wrong.
    /// </summary>
    [Theory]
    [InlineData("made-up token")]
    [InlineData("no token")]
    [InlineData("bad signature")]
    public void An_unknown_peer_refused_leaves_nothing_persisted_and_its_session_stops(string attempt)
    {
        var entity = ChildActorOf(PeerSession.Props(PeerId, Region, Fast with { PassivateIdleAfter = TimeSpan.FromMinutes(2) }, Enrollment,
            PeersRegion.Ref, Clock, logger: SessionLog));
        Enrollment.AnswerWith(new EnrollmentResult.Refused(RefusalReason.BadToken, "no such token"));
        var login = attempt switch
        {
            "made-up token" => EnrollingAuth(),
            "no token" => Auth(),
            _ => Auth(signer: IdentityKey.Generate(), token: Token, publicKey: Key.PublicKey),
        };

        Request<PeerRefused>(entity, login);

        Assert.Same(StopPeerSession.Instance, ExpectMsg<Passivate>(Patience).StopMessage);
        Assert.Empty(JournalEvents(PersistenceId));
        Watch(entity);
        entity.Tell(StopPeerSession.Instance, TestActor);
        ExpectTerminated(entity, Patience);
    }

    [Fact]
    public void An_enrolled_peer_refused_keeps_its_session()
    {
        var entity = ChildActorOf(PeerSession.Props(PeerId, Region, Fast with { PassivateIdleAfter = TimeSpan.FromMinutes(2) }, Enrollment,
            PeersRegion.Ref, Clock, logger: SessionLog));
        Enroll(entity);

        Assert.Equal(RefusalReason.BadSignature, Request<PeerRefused>(entity, Auth(signer: IdentityKey.Generate())).Reason);

        Advance(entity, TimeSpan.FromMinutes(1));
        ExpectNoMsg(TimeSpan.Zero);
        Assert.True(State(entity).Enrolled);
    }

    [Fact]
    public void Unreachable_directory_refuses_as_unavailable_and_a_retry_can_enroll()
    {
        var entity = Start();
        Enrollment.AnswerWith(new EnrollmentResult.Unavailable("connection refused"));

        var refused = Request<PeerRefused>(entity, EnrollingAuth());
        Enrollment.AnswerWith(new EnrollmentResult.Redeemed("token-2"));
        Request<PeerAuthenticated>(entity, EnrollingAuth());

        Assert.Equal(
            new PeerRefused(PeerId, RefusalReason.Unavailable, "the directory cannot be reached to enroll; retry"),
            refused);
        Assert.Equal(2, Enrollment.Calls.Count);
        Assert.Equal("token-2", Assert.Single(Journaled<PeerEnrolled>()).TokenId);
    }

    [Fact]
    public void Enrollment_client_that_throws_is_refused_as_unavailable()
    {
        var entity = Start();
        Enrollment.Respond = (_, _) => Task.FromException<EnrollmentResult>(new HttpRequestException("no route to host"));

        Assert.Equal(RefusalReason.Unavailable, Request<PeerRefused>(entity, EnrollingAuth()).Reason);
    }

    [Fact]
    public void Enrollment_that_never_answers_is_refused_as_unavailable_after_the_enrollment_timeout()
    {
        var entity = Start(Fast with { EnrollmentTimeout = TimeSpan.FromMilliseconds(300) });
        var neverAnswered = new TaskCompletionSource<EnrollmentResult>();
        Enrollment.Respond = (_, _) => neverAnswered.Task;
        var peer = CreateTestProbe();
        entity.Tell(EnrollingAuth(), peer.Ref);
        AwaitAssert(() => Assert.Single(Enrollment.Calls), Patience);
        peer.ExpectNoMsg(TimeSpan.Zero);

        Clock.Advance(TimeSpan.FromMilliseconds(300));

        Assert.Equal(RefusalReason.Unavailable, peer.ExpectMsg<PeerRefused>(Patience).Reason);
        Assert.False(State(entity).Enrolled);
    }

    [Fact]
    public void Authentications_during_a_redemption_wait_for_it_and_do_not_redeem_again()
    {
        var entity = Start();
        var directory = new TaskCompletionSource<EnrollmentResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        Enrollment.Respond = (_, _) => directory.Task;
        var first = CreateTestProbe();
        var second = CreateTestProbe();

        entity.Tell(EnrollingAuth(), first.Ref);
        entity.Tell(EnrollingAuth(), second.Ref);
        State(entity); // both authentications were handled before this, and neither is answered yet
        first.ExpectNoMsg(TimeSpan.Zero);
        second.ExpectNoMsg(TimeSpan.Zero);
        directory.SetResult(new EnrollmentResult.Redeemed("token-1"));

        var firstSession = first.ExpectMsg<PeerAuthenticated>(Patience).SessionId;
        var secondSession = second.ExpectMsg<PeerAuthenticated>(Patience).SessionId;
        Assert.NotEqual(firstSession, secondSession);
        Assert.Single(Enrollment.Calls);
        Assert.Single(Journaled<PeerEnrolled>());
    }

    [Fact]
    public void Peer_revoked_while_its_token_is_redeemed_is_refused_and_not_enrolled()
    {
        var entity = Start();
        var directory = new TaskCompletionSource<EnrollmentResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        Enrollment.Respond = (_, _) => directory.Task;
        var enrolling = CreateTestProbe();
        entity.Tell(EnrollingAuth(), enrolling.Ref);

        Request<PeerRevoked>(entity, new RevokePeer(PeerId));
        directory.SetResult(new EnrollmentResult.Redeemed("token-1"));

        Assert.Equal(RefusalReason.Revoked, enrolling.ExpectMsg<PeerRefused>(Patience).Reason);
        Assert.False(State(entity).Enrolled);
        Assert.Empty(Journaled<PeerEnrolled>());
    }

    [Fact]
    public void Attach_with_the_latest_session_id_is_accepted_and_an_older_one_is_refused_as_replaced()
    {
        var entity = Start();
        var older = Enroll(entity);
        var latest = Authenticate(entity);

        var stale = Request<CloseStream>(entity, new AttachStream(PeerId, older, CreateTestProbe().Ref));
        AttachEdge(entity, latest);

        Assert.Equal(RefusalReason.Replaced, stale.Reason);
        Assert.True(State(entity).StreamAttached);
    }

    [Fact]
    public void Attach_before_any_authentication_is_refused_as_unknown_peer()
    {
        var entity = Start();

        var refused = Request<CloseStream>(entity, new AttachStream(PeerId, "0123456789abcdef0123456789abcdef", CreateTestProbe().Ref));

        Assert.Equal(RefusalReason.UnknownPeer, refused.Reason);
        Assert.False(State(entity).StreamAttached);
    }

    [Fact]
    public void Newer_stream_replaces_the_attached_edge_which_is_closed_and_no_longer_watched()
    {
        var entity = Start();
        var oldEdge = AttachEdge(entity, Enroll(entity));
        var newEdge = AttachEdge(entity, Authenticate(entity));

        Assert.Equal(RefusalReason.Replaced, oldEdge.ExpectMsg<CloseStream>(Patience).Reason);
        Watch(oldEdge.Ref);
        Sys.Stop(oldEdge.Ref);
        ExpectTerminated(oldEdge.Ref, Patience);
        Assert.True(State(entity).StreamAttached); // the old edge's death did not detach the new one

        var issuer = CreateTestProbe();
        var id = Issue(entity, issuer, SetupExit());
        Assert.Equal(id, newEdge.ExpectMsg<DeliverCommand>(Patience).Command.CommandId);
    }
}
