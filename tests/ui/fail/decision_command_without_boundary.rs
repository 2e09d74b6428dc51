use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "seat.taken")]
struct Taken {
    #[tag]
    course: u64,
}

#[derive(Clone, Debug)]
struct Take {
    course: u64,
}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "seats", events(Taken), commands(Take), decision)]
struct Seats {
    taken: u32,
}

impl Apply<Taken> for Seats {
    fn apply(&mut self, _: &Taken) {
        self.taken += 1;
    }
}

impl Handle<Take> for Seats {
    fn handle(&self, command: Take) -> Result<Events<Self>, std::convert::Infallible> {
        Ok(Events::one(Taken { course: command.course }))
    }
}

fn main() {}
