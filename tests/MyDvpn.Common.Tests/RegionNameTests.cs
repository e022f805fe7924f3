namespace MyDvpn.Common.Tests;

public sealed class RegionNameTests
{
    [Theory]
    [InlineData("a")]
    [InlineData("eu-west")]
    [InlineData("us-east-1")]
    [InlineData("ap2")]
    [InlineData("abcdefghijklmnopqrstuvwxyz012345")] // 32 characters
    public void Valid_names_are_accepted(string region)
    {
        Assert.True(RegionName.IsValid(region, out var reason));
        Assert.Equal(string.Empty, reason);
    }

    [Theory]
    [InlineData(null, "empty")]
    [InlineData("", "empty")]
    [InlineData("abcdefghijklmnopqrstuvwxyz0123456", "at most 32")] // 33 characters
    [InlineData("1eu", "start with a lowercase letter")]
    [InlineData("-eu", "start with a lowercase letter")]
    [InlineData("eu-", "must not end with '-'")]
    [InlineData("EU-west", "start with a lowercase letter")]
    [InlineData("eu-West", "contains 'W'")]
    [InlineData("eu_west", "contains '_'")]
    [InlineData("eu west", "contains ' '")]
    [InlineData("eu.west", "contains '.'")]
    [InlineData("éu", "start with a lowercase letter")]
    public void Invalid_names_are_refused_with_a_reason(string? region, string reasonPart)
    {
        Assert.False(RegionName.IsValid(region, out var reason));
        Assert.Contains(reasonPart, reason, StringComparison.Ordinal);
    }
}
