//! Groups episodes into personas.

use std::collections::{BTreeSet, HashMap};

use super::episode::Episode;

/// A persona: the episodes that share it, in file order, and the union of their persona sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaCluster {
    /// Positions of the member episodes in the slice given to [`cluster_personas`], increasing.
    pub episodes: Vec<usize>,
    /// Union of the members' normalised persona sentences.
    pub sentences: BTreeSet<String>,
    /// Total number of dialogue turns (examples) of the members.
    pub examples: usize,
}

/// Clusters `episodes` into personas, ordered by their first episode.
///
/// Rule: two episodes belong to the same persona when their persona sets (normalised with [`persona_key`]) share at
/// least `min_shared` sentences; personas are the connected components of that relation (union-find). With
/// `min_shared = 2` the 1,000 validation episodes form exactly 100 clusters, PersonaChat's number of validation
/// personas: PersonaChat shows each persona in several wordings that differ in sentence order, in one or two
/// rephrased sentences, or in contractions ("i'm" / "i am"), and two wordings of one persona share at least two
/// sentences. With `min_shared = 1` generic sentences such as "i am a woman" chain different personas together (95
/// clusters, the largest with 29 episodes). Episodes without persona sentences (`none` files) share nothing and each
/// form their own cluster. `min_shared` of 0 is treated as 1.
///
/// [`persona_key`]: super::persona_key
pub fn cluster_personas(episodes: &[Episode], min_shared: usize) -> Vec<PersonaCluster> {
    let min_shared = min_shared.max(1);
    let sets: Vec<BTreeSet<String>> = episodes.iter().map(Episode::persona_set).collect();
    let mut parent: Vec<usize> = (0..episodes.len()).collect();
    // Inverted index sentence -> earlier episodes: each episode is compared only with episodes that share a sentence.
    let mut postings: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut shared: HashMap<usize, usize> = HashMap::new();
    for (i, set) in sets.iter().enumerate() {
        shared.clear();
        for sentence in set {
            if let Some(earlier) = postings.get(sentence.as_str()) {
                for &j in earlier {
                    *shared.entry(j).or_insert(0) += 1;
                }
            }
        }
        for (&j, &count) in &shared {
            if count >= min_shared {
                union(&mut parent, i, j);
            }
        }
        for sentence in set {
            postings.entry(sentence.as_str()).or_default().push(i);
        }
    }
    let mut by_root: HashMap<usize, usize> = HashMap::new();
    let mut clusters: Vec<PersonaCluster> = Vec::new();
    for i in 0..episodes.len() {
        let root = find(&mut parent, i);
        let k = *by_root.entry(root).or_insert_with(|| {
            clusters.push(PersonaCluster {
                episodes: Vec::new(),
                sentences: BTreeSet::new(),
                examples: 0,
            });
            clusters.len() - 1
        });
        let cluster = &mut clusters[k];
        cluster.episodes.push(i);
        cluster.sentences.extend(sets[i].iter().cloned());
        cluster.examples += episodes[i].turns.len();
    }
    clusters
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        // Path halving keeps the trees shallow without recursion.
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // The smaller root wins so that the result does not depend on HashMap iteration order.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi] = lo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convai2::episode::Turn;

    fn ep(persona: &[&str]) -> Episode {
        Episode {
            index: 0,
            line: 0,
            your_persona: persona.iter().map(|s| s.to_string()).collect(),
            partner_persona: Vec::new(),
            turns: vec![Turn {
                partner: "hi".into(),
                reply: "yo".into(),
                reward: String::new(),
                candidates: Vec::new(),
            }],
        }
    }

    #[test]
    fn order_and_one_variant_sentence_do_not_split_a_persona() {
        let eps = [
            ep(&["a.", "b.", "c.", "d."]),
            ep(&["d", "c", "b", "a"]),
            ep(&["a", "b", "c", "x"]),
            ep(&["a", "e", "f", "g"]),
            ep(&[]),
            ep(&[]),
        ];
        let clusters = cluster_personas(&eps, 2);
        let members: Vec<_> = clusters.iter().map(|c| c.episodes.clone()).collect();
        assert_eq!(members, vec![vec![0, 1, 2], vec![3], vec![4], vec![5]]);
        assert_eq!(cluster_personas(&eps, 1).len(), 3);
    }
}
