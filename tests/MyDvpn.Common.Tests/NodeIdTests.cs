namespace MyDvpn.Common.Tests;

public sealed class NodeIdTests
{
    [Theory]
    [InlineData("a")]
    [InlineData("7")]
    [InlineData("super-1")]
    [InlineData("Node_2.eu-west")]
    [InlineData("a123456789012345678901234567890123456789012345678901234567890123")] // 64 characters
    public void Valid_ids_are_accepted(string id)
    {
        Assert.True(NodeId.IsValid(id, out var reason));
        Assert.Equal(string.Empty, reason);
    }

    [Theory]
    [InlineData(null, "is empty")]
    [InlineData("", "is empty")]
    [InlineData("a1234567890123456789012345678901234567890123456789012345678901234", "1-64 characters")] // 65 characters
    [InlineData("-super", "starting with a letter or digit")]
    [InlineData(".super", "starting with a letter or digit")]
    [InlineData("super 1", "letters, digits")]
    [InlineData("super/1", "letters, digits")]
    [InlineData("super:1", "letters, digits")]
    [InlineData("süper", "letters, digits")]
    [InlineData("\nsuper", "letters, digits")]
    public void Invalid_ids_are_refused_with_a_reason(string? id, string reasonPart)
    {
        Assert.False(NodeId.IsValid(id, out var reason));
        Assert.Contains(reasonPart, reason, StringComparison.Ordinal);
    }

    [Fact]
    public void An_id_with_a_trailing_newline_is_refused()
    {
        // An id ends up in logs, metrics labels and certificates; a line break must never get through.
        Assert.False(NodeId.IsValid("super-1\n", out var reason));
        Assert.Contains("letters, digits", reason, StringComparison.Ordinal);
    }
}
